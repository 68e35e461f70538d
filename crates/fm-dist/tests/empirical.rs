//! Point clouds from `.npy` and `.csv` files.

use fm_dist::empirical::{parse_csv, parse_csv_table, CsvPoints};
use fm_dist::io::write_npy;
use fm_dist::{parse_target, PointCloud};
use ndarray::{array, Array2, Axis};
use rand::{rngs::StdRng, SeedableRng};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fm-dist-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn csv_parses_with_header_comments_and_blank_lines() {
    let a = parse_csv("x,y\n# a comment\n1, 2\n\n-3.5,4e-1\n").unwrap();
    assert_eq!(a, array![[1.0, 2.0], [-3.5, 0.4]]);
    assert_eq!(parse_csv("1,2,3\n").unwrap().dim(), (1, 3));
}

/// What the csv crate adds: a byte-order mark (Excel's "CSV UTF-8"), CRLF line ends, quotes.
#[test]
fn csv_with_a_byte_order_mark_crlf_and_quotes_parses() {
    let want = array![[1.0, 2.0], [-3.5, 0.4]];
    assert_eq!(parse_csv("\u{feff}x,y\r\n1,2\r\n-3.5,4e-1\r\n").unwrap(), want);
    assert_eq!(parse_csv("\u{feff}1,2\n-3.5,4e-1").unwrap(), want, "the mark is not part of the first value");
    assert_eq!(parse_csv("\"x\",\"y, in m\"\n\"1\",2\n-3.5,\"4e-1\"\n").unwrap(), want);
    assert!(parse_csv("\"1,5\",2\n").unwrap_err().contains("line 1 field 1: '1,5' is not a number"));
}

#[test]
fn csv_errors_name_the_line() {
    let cases = [
        ("1,2\n3\n", "line 2 has 1 fields, expected 2"),
        ("1,2\n3,abc\n", "line 2 field 2: 'abc' is not a number"),
        ("1,2\nNaN,1\n", "line 2 field 1: NaN is not a finite number"),
        ("1,inf\n", "line 1 field 2: inf is not a finite number"),
        // Skipped lines count: comments, blank lines, indented comments and lines of spaces.
        ("# c\nx,y\n\n1,2\n  # c, d\n   \n3,abc\n", "line 7 field 2: 'abc' is not a number"),
        ("1,2\r\n\r\n3\r\n", "line 3 has 1 fields, expected 2"),
        ("", "no data rows"),
        ("x,y\n", "no data rows"),
        ("# only a comment\n\n", "no data rows"),
    ];
    for (text, want) in cases {
        let e = parse_csv(text).unwrap_err();
        assert!(e.contains(want), "{text:?}: got '{e}', expected '{want}'");
    }
}

#[test]
fn npy_clouds_of_f32_and_f64_load_and_sample_with_replacement() {
    let dir = temp_dir("cloud");
    let pts = Array2::from_shape_fn((5, 3), |(i, j)| (i * 10 + j) as f64);
    write_npy(&dir.join("a.npy"), pts.view()).unwrap();
    write_npy(&dir.join("b.npy"), pts.mapv(|v| v as f32).view()).unwrap();
    for f in ["a.npy", "b.npy"] {
        let t = parse_target(&format!("file:{}", dir.join(f).display())).unwrap();
        assert_eq!((t.dim(), t.name()), (3, f.to_string()));
        assert!(!t.has_density());
        assert!(t.log_prob(pts.view()).unwrap_err().to_string().contains("no analytic density"));
        // 2,000 draws from 5 points: every draw is one of the points, and each point's
        // share is 0.2 ± 5 standard errors (sqrt(0.2·0.8/2000) ≈ 0.009).
        let x = t.sample(2000, &mut StdRng::seed_from_u64(0));
        let mut counts = [0usize; 5];
        for row in x.axis_iter(Axis(0)) {
            let i = pts.axis_iter(Axis(0)).position(|p| p == row).expect("a sample that is not one of the points");
            counts[i] += 1;
        }
        for c in counts {
            assert!((c as f64 / 2000.0 - 0.2).abs() < 5.0 * 0.009, "{counts:?}");
        }
        assert_eq!(x, t.sample(2000, &mut StdRng::seed_from_u64(0)), "reproducible from a seed");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_point_cloud_files_are_errors() {
    let dir = temp_dir("bad-cloud");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        format!("file:{}", p.display())
    };
    let nan = dir.join("nan.npy");
    write_npy(&nan, array![[1.0, f64::NAN]].view()).unwrap();
    let empty = dir.join("empty.npy");
    write_npy(&empty, Array2::<f64>::zeros((0, 2)).view()).unwrap();
    let cases = [
        (format!("file:{}", nan.display()), "row 1 column 2 holds NaN"),
        (format!("file:{}", empty.display()), "at least one point"),
        (write("ragged.csv", b"1,2\n3,4,5\n"), "ragged.csv: line 2 has 3 fields"),
        (write("empty.csv", b""), "empty.csv: the file holds no data rows"),
        (write("junk.npy", b"not numpy"), "junk.npy: not a .npy file"),
        (write("cloud.txt", b"1,2\n"), "expected a .npy or .csv file"),
        (format!("file:{}", dir.join("missing.csv").display()), "missing.csv"),
    ];
    for (spec, want) in cases {
        let e = match parse_target(&spec) {
            Ok(_) => panic!("{spec} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{spec}: got '{e}', expected '{want}'");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cloud_from_memory_rejects_non_finite_points() {
    assert!(PointCloud::new(array![[1.0], [f64::INFINITY]], "x").unwrap_err().to_string().contains("row 2 column 1"));
}

// Regressions of the issue "text files change the data silently": each shape pandas (or a
// spreadsheet) writes is either read as the user meant or refused with one line saying why.

fn names(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

fn error(text: &str) -> String {
    match parse_csv_table(text) {
        Ok(t) => panic!("{text:?} was read as {t:?}"),
        Err(e) => {
            assert!(!e.contains('\n'), "{text:?}: the error is not one line: {e}");
            e
        }
    }
}

/// `df.to_csv(index=False)` of a frame made from a numpy array: the header is the column numbers.
#[test]
fn pandas_column_numbers_over_fractions_are_a_header() {
    let t = parse_csv_table("0,1\n0.5,-1.25\n3.0,2.0\n-0.125,1e-3\n").unwrap();
    assert_eq!(t, CsvPoints { points: array![[0.5, -1.25], [3.0, 2.0], [-0.125, 1e-3]], header: names(&["0", "1"]), index_column: false });
    assert_eq!(parse_csv("0\n0.5\n1\n").unwrap(), array![[0.5], [1.0]], "one column");
    assert_eq!(parse_csv("0,1,2\n1,2,3.5\n").unwrap(), array![[1.0, 2.0, 3.5]], "a single fraction decides");
    // Not pandas' names: a point, as before.
    for (text, rows) in [("0,2\n0.5,1\n", 2), ("1,0\n0.5,1\n", 2), ("0.0,1.0\n0.5,1\n", 2), ("00,1\n0.5,1\n", 2)] {
        assert_eq!(parse_csv_table(text).unwrap().points.nrows(), rows, "{text:?}");
    }
}

/// Over whole numbers `0,1` could as well be a point: refused, with the two ways out.
#[test]
fn pandas_column_numbers_over_whole_numbers_are_refused() {
    for text in ["0,1\n2,3\n4,5\n", "0,1\n2.0,3\n", "0,1\n", "0\n1\n2\n"] {
        let e = error(text);
        assert!(e.contains("line 1") && e.contains("could be pandas' default column names or a data point"), "{text:?}: {e}");
        assert!(e.contains("header=False"), "{e}");
    }
    assert!(error("0,1\n2,3\n").contains("add a header line such as 'x,y' above it"));
    assert!(error("# made by hand\n0,1,2\n3,4,5\n").contains("line 2 (0,1,2)"));
}

/// `df.to_csv()`: the index column's name is empty; it is dropped, the values are untouched.
#[test]
fn pandas_index_column_under_an_empty_name_is_dropped() {
    let t = parse_csv_table(",x,y\n0,0.5,-1.25\n1,3,2\n2,-0.125,1e-3\n").unwrap();
    assert_eq!(t, CsvPoints { points: array![[0.5, -1.25], [3.0, 2.0], [-0.125, 1e-3]], header: names(&["x", "y"]), index_column: true });
    // Any integers: a filtered or shuffled frame keeps its labels.
    assert_eq!(parse_csv(",x\n7,1.5\n-2,2.5\n+3,3\n").unwrap(), array![[1.5], [2.5], [3.0]]);
}

/// `pd.read_csv` of such a file names the index column `Unnamed: 0`; written again it stays.
#[test]
fn unnamed_0_index_column_is_dropped() {
    let t = parse_csv_table("Unnamed: 0,x,y\n0,0.5,-1.25\n1,3,2\n").unwrap();
    assert_eq!(t, CsvPoints { points: array![[0.5, -1.25], [3.0, 2.0]], header: names(&["x", "y"]), index_column: true });
    assert!(error("Unnamed: 0\n0\n1\n").contains("line 1: its only column, 'Unnamed: 0', is a pandas index"));
}

/// `df.to_csv()` of a frame from a numpy array: index and column numbers, unambiguous (the
/// empty first field is no coordinate) even over whole numbers.
#[test]
fn pandas_index_with_column_numbers_is_an_index_and_a_header() {
    for text in [",0,1\n0,0.5,-1.25\n1,3,2\n", "Unnamed: 0,0,1\n0,0.5,-1.25\n1,3,2\n"] {
        let t = parse_csv_table(text).unwrap();
        assert_eq!(t, CsvPoints { points: array![[0.5, -1.25], [3.0, 2.0]], header: names(&["0", "1"]), index_column: true }, "{text:?}");
    }
    assert_eq!(parse_csv(",0,1\n0,4,5\n1,6,7\n").unwrap(), array![[4.0, 5.0], [6.0, 7.0]]);
}

#[test]
fn index_column_that_is_not_integers_is_refused_naming_the_line() {
    let e = error(",x,y\n0,1,2\n0.5,3,4\n");
    assert!(e.contains("line 3 field 1: '0.5' is not an integer") && e.contains("empty first name"), "{e}");
    let e = error("# c\nUnnamed: 0,x\n0,1\n\nb,2\n");
    assert!(e.contains("line 5 field 1: 'b' is not an integer") && e.contains("'Unnamed: 0'"), "{e}");
}

/// `df.to_csv(header=False)`: the index is a first column counting from 0. Taken as a
/// coordinate it would add a dimension; refused.
#[test]
fn headerless_pandas_index_column_is_refused() {
    let e = error("0,0.5,-1.25\n1,3.0,2.0\n2,-0.125,1e-3\n");
    assert!(e.contains("column 1 counts 0, 1, 2, …, 2 (lines 1–3) like the index pandas writes"), "{e}");
    assert!(e.contains("index=False") && e.contains("',x,y'"), "{e}");
    assert!(error("# c\n\n0,0.5\n1,1.5\n2,2\n3,3\n").contains("…, 3 (lines 3–6)"));
    // Not an index: fewer than three rows, whole numbers only, a count not from 0, one
    // written as a float, or a header naming the column.
    for text in ["0,0.5\n1,1.5\n", "0,5\n1,6\n2,7\n", "1,0.5\n2,1.5\n3,2.5\n", "0,0.5\n1.0,1.5\n2,2.5\n", "t,x\n0,0.5\n1,1.5\n2,2.5\n", "0.5\n1\n2\n"] {
        assert!(parse_csv_table(text).is_ok(), "{text:?}: {:?}", parse_csv_table(text));
    }
    assert_eq!(parse_csv("t,x\n0,0.5\n1,1.5\n2,2.5\n").unwrap().ncols(), 2, "a named first column is data");
}

/// A first line mixing numbers and text is neither a header nor a point.
#[test]
fn mixed_first_row_is_an_error_naming_line_1() {
    for (text, want) in [
        ("1.0,abc\n2.0,3.0\n", "line 1 field 2: 'abc' is not a number"),
        ("abc,1.0\n2.0,3.0\n", "line 1 field 1: 'abc' is not a number"),
        (",1,2\n0,3,4\n", "line 1 field 1: '' is not a number"),
        ("Unnamed: 0,1.5,x\n0,3,4\n", "line 1 field 1: 'Unnamed: 0' is not a number"),
        ("# c\n1,x\n2,3\n", "line 2 field 2: 'x' is not a number"),
    ] {
        let e = error(text);
        assert!(e.contains(want) && e.contains("so it is no header"), "{text:?}: got '{e}', expected '{want}'");
    }
}

/// Excel's "CSV UTF-8" starts with a byte-order mark; with one column, a mark read as part of
/// the first value would make it a header and lose that value.
#[test]
fn bom_with_one_column_keeps_the_first_value() {
    let t = parse_csv_table("\u{feff}5\n6\n7.5\n").unwrap();
    assert_eq!((t.points, t.header), (array![[5.0], [6.0], [7.5]], None));
    let t = parse_csv_table("\u{feff}x\r\n5\r\n6\r\n").unwrap();
    assert_eq!((t.points, t.header), (array![[5.0], [6.0]], names(&["x"])));
}

#[test]
fn bom_with_two_columns_errors_do_not_show_the_mark() {
    for (text, want) in [
        ("\u{feff}1,abc\n", "line 1 field 2: 'abc'"),
        ("\u{feff}abc,1\n", "line 1 field 1: 'abc'"),
        ("\u{feff}x,y\n1,abc\n", "line 2 field 2: 'abc'"),
        ("\u{feff}1,2\n3\n", "line 2 has 1 fields"),
    ] {
        let e = error(text);
        assert!(e.contains(want) && !e.contains('\u{feff}'), "{text:?}: {e:?}");
    }
    // A mark anywhere else is garbage, and shown escaped rather than invisible.
    let e = error("1,2\n\u{feff}3,4\n");
    assert!(e.contains("line 2 field 1: '\\u{feff}3' is not a number") && !e.contains('\u{feff}'), "{e:?}");
}

#[test]
fn crlf_and_quoted_pandas_files_parse() {
    let want = array![[0.5, -1.25], [3.0, 2.0]];
    assert_eq!(parse_csv("0,1\r\n0.5,-1.25\r\n3.0,2.0\r\n").unwrap(), want);
    assert_eq!(parse_csv(",x,y\r\n0,0.5,-1.25\r\n1,3.0,2.0\r\n").unwrap(), want);
    assert_eq!(parse_csv("\"\",\"x\",\"y\"\n\"0\",\"0.5\",-1.25\n1,3.0,\"2.0\"\n").unwrap(), want);
    assert_eq!(parse_csv("\"0\",\"1\"\n0.5,-1.25\n3.0,2.0\n").unwrap(), want);
    assert!(error("0,0.5\r\n1,1.5\r\n2,2.5\r\n").contains("lines 1–3"));
    assert!(error("\"1\",\"a\nb\"\n").contains("'a\\nb' is not a number"), "a quoted newline stays on one line");
}

/// The description gives the row count and what the first line was taken as.
#[test]
fn describe_reports_the_row_count_and_the_header() {
    let dir = temp_dir("describe");
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        PointCloud::read(&p).unwrap().describe()
    };
    let rows: String = (0..1000).map(|i| format!("{i},{},{}\n", i as f64 / 8.0, -(i as f64))).collect();
    assert_eq!(write("pts.csv", format!(",x,y\n{rows}")), "1,000 points in 2 dimensions from pts.csv (header: x, y; pandas index column dropped)");
    assert_eq!(write("numbers.csv", "0,1\n0.5,1\n".into()), "1 point in 2 dimensions from numbers.csv (header: pandas' default column names 0, 1)");
    assert_eq!(write("plain.csv", "1\n2\n".into()), "2 points in 1 dimension from plain.csv (no header)");
    let wide = (0..12).map(|j| format!("c{j}")).collect::<Vec<_>>().join(",") + "\n" + &["1"; 12].join(",") + "\n";
    assert_eq!(write("wide.csv", wide), "1 point in 12 dimensions from wide.csv (header: c0, c1, c2, c3, c4, c5, …, c11)");
    write_npy(&dir.join("a.npy"), Array2::<f64>::zeros((5, 3)).view()).unwrap();
    assert_eq!(PointCloud::read(&dir.join("a.npy")).unwrap().describe(), "5 points in 3 dimensions from a.npy");
    assert_eq!(PointCloud::new(array![[1.0]], "mem").unwrap().describe(), "1 point in 1 dimension from mem");
    // The target parser reads the same way: the index column is no dimension.
    let t = parse_target(&format!("file:{}", dir.join("pts.csv").display())).unwrap();
    assert_eq!(t.dim(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
