//! Point clouds from `.npy` and `.csv` files.

use fm_dist::empirical::parse_csv;
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
