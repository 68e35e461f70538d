//! Class labels and conditions: every target with components labels its samples, the labels
//! are the components the points were drawn from, class densities are the components', and a
//! file's labels are read from a column or a second file and validated.

use fm_dist::toy::{Checkerboard, Circles, EightGaussians, Moons, Pinwheel, SwissRoll, TwoSpirals};
use fm_dist::{parse_target, GaussianMixture, PointCloud, Target};
use ndarray::{array, Axis};
use rand::{rngs::StdRng, SeedableRng};

#[test]
fn labelled_samples_are_the_plain_samples_with_their_classes() {
    let targets: Vec<(Box<dyn Target>, usize)> = vec![
        (Box::new(GaussianMixture::seed()), 3),
        (Box::new(EightGaussians::new_default()), 8),
        (Box::new(Moons), 2),
        (Box::new(Circles), 2),
        (Box::new(TwoSpirals), 2),
        (Box::new(Pinwheel), 5),
        (Box::new(Checkerboard), 8),
        (Box::new(SwissRoll), 0),
    ];
    for (t, classes) in targets {
        assert_eq!(t.classes(), classes, "{}", t.name());
        let plain = t.sample(500, &mut StdRng::seed_from_u64(1));
        let drawn = t.sample_conditioned(500, &mut StdRng::seed_from_u64(1));
        assert_eq!(drawn.points, plain, "{}: the labelled draw moved the points", t.name());
        match classes {
            0 => assert!(drawn.labels.is_none()),
            k => {
                let labels = drawn.labels.unwrap();
                assert!(labels.iter().all(|&l| l < k));
                // Every class shows up (500 draws; the rarest class has weight ≥ 0.125).
                assert!((0..k).all(|c| labels.contains(&c)), "{}: {labels:?}", t.name());
                assert!((t.class_weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn a_mixtures_labels_are_its_components_and_class_densities_its_components_densities() {
    let gmm = GaussianMixture::seed();
    let n = 20_000;
    let drawn = gmm.sample_conditioned(n, &mut StdRng::seed_from_u64(2));
    let labels = drawn.labels.unwrap();
    for (c, w) in gmm.weights().iter().enumerate() {
        let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == c).collect();
        let share = rows.len() as f64 / n as f64;
        // Within 4 binomial standard errors of the weight.
        assert!((share - w).abs() < 4.0 * (w * (1.0 - w) / n as f64).sqrt(), "class {c}: {share} vs {w}");
        let mean = drawn.points.select(Axis(0), &rows).mean_axis(Axis(0)).unwrap();
        let sd = gmm.covariances()[c].diag().mapv(f64::sqrt);
        for j in 0..2 {
            assert!((mean[j] - gmm.means()[[c, j]]).abs() < 4.0 * sd[j] / (rows.len() as f64).sqrt(), "class {c} mean {mean}");
        }
    }
    // log p(x | c) is the component's Gaussian: at its mean, −½ log det(2πΣ).
    let at_mean = gmm.class_log_prob(gmm.means(), 1).unwrap();
    let det = {
        let s = &gmm.covariances()[1];
        s[[0, 0]] * s[[1, 1]] - s[[0, 1]] * s[[1, 0]]
    };
    assert!((at_mean[1] + 0.5 * ((2.0 * std::f64::consts::PI).powi(2) * det).ln()).abs() < 1e-12);
    // Σ_c p(c) p(x|c) = p(x).
    let x = array![[0.3, -1.2], [2.0, 2.0]];
    let mix: Vec<f64> = (0..2).map(|i| (0..3).map(|c| gmm.weights()[c] * gmm.class_log_prob(x.view(), c).unwrap()[i].exp()).sum::<f64>().ln()).collect();
    let lp = gmm.log_prob(x.view()).unwrap();
    assert!(mix.iter().zip(&lp).all(|(a, b)| (a - b).abs() < 1e-12));
    assert!(gmm.class_log_prob(x.view(), 3).unwrap_err().to_string().contains("out of range"));
    assert_eq!(gmm.most_probable_class(gmm.means()).unwrap(), vec![Some(0), Some(1), Some(2)]);
}

#[test]
fn a_checkerboards_classes_are_its_squares() {
    let drawn = Checkerboard.sample_conditioned(2000, &mut StdRng::seed_from_u64(3));
    for (p, &l) in drawn.points.rows().into_iter().zip(drawn.labels.as_ref().unwrap()) {
        // Square l as documented: rows from the bottom (y ∈ [2j, 2j + 2), j = l/2 − 2), the row's
        // two dark squares from the left (columns i with i + j even).
        let j = (l / 2) as i64 - 2;
        let i = if j.rem_euclid(2) == 0 { -2 } else { -1 } + 2 * (l % 2) as i64;
        let inside = |v: f64, k: i64| (2 * k) as f64 <= v && v < (2 * k + 2) as f64;
        assert!(inside(p[0], i) && inside(p[1], j), "{p} labelled {l}");
        assert_eq!(Checkerboard::square(p[0], p[1]), Some(l));
        assert_eq!(Checkerboard.class_log_prob(p.insert_axis(Axis(0)), l).unwrap()[0], -(4f64.ln()));
    }
    // Eight distinct squares, all dark.
    let mut squares: Vec<_> = drawn.labels.unwrap();
    squares.sort_unstable();
    squares.dedup();
    assert_eq!(squares, (0..8).collect::<Vec<_>>());
    assert_eq!(Checkerboard::square(-3.0, -3.0), Some(0));
    assert_eq!(Checkerboard::square(-1.0, -3.0), None);
}

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fm-dist-labels-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_files_labels_come_from_a_column_or_a_second_file() {
    let d = dir();
    let csv = d.join("pts.csv");
    std::fs::write(&csv, "x,y,species\n0.5,1.0,0\n1.5,2.0,1\n2.5,3.0,1\n3.5,4.0,0\n").unwrap();
    for spec in [format!("file:{}?label=last", csv.display()), format!("file:{}?label=species", csv.display()), format!("file:{}?label=3", csv.display())] {
        let t = parse_target(&spec).unwrap();
        assert_eq!((t.dim(), t.classes()), (2, 2), "{spec}");
        let drawn = t.sample_conditioned(50, &mut StdRng::seed_from_u64(0));
        for (p, &l) in drawn.points.rows().into_iter().zip(drawn.labels.as_ref().unwrap()) {
            // Rows 1 and 4 are class 0; their x is 0.5 or 3.5.
            assert_eq!(l == 0, p[0] == 0.5 || p[0] == 3.5, "{p} labelled {l}");
        }
        assert!(t.describe_data().unwrap().contains("2 classes of 2/2 points"), "{}", t.describe_data().unwrap());
    }
    // Labels from a .npy of int64 beside a .npy of points.
    let pts = d.join("pts.npy");
    fm_dist::io::write_npy(&pts, array![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]].view()).unwrap();
    let labels = d.join("y.npy");
    fm_dist::io::write_npy(&labels, array![[2i64], [0], [1]].view()).unwrap();
    let t = PointCloud::open(&format!("{}?labels={}", pts.display(), labels.display())).unwrap();
    assert_eq!(t.labels().unwrap(), &[2, 0, 1]);
    assert_eq!(t.class_counts(), vec![1, 1, 1]);
    // Condition vectors from columns.
    let t = PointCloud::open(&format!("{}?cond=species", csv.display())).unwrap();
    assert_eq!((t.dim(), t.condition_dim(), t.classes()), (2, 1, 0));
}

#[test]
fn bad_labels_are_refused_with_a_message_naming_them() {
    let d = dir();
    let cases = [
        ("frac.csv", "x,y,label\n0,1,0\n1,2,1.5\n", "label=last", "label 1.5 of point 2"),
        ("neg.csv", "x,y,label\n0,1,0\n1,2,-1\n", "label=last", "label -1 of point 2"),
        ("gap.csv", "x,y,label\n0,1,0\n1,2,2\n", "label=last", "class 1 has no points"),
        ("col.csv", "x,y,label\n0,1,0\n1,2,1\n", "label=species", "no column 'species'"),
        ("opt.csv", "x,y,label\n0,1,0\n1,2,1\n", "labl=last", "unknown option 'labl'"),
        ("bare.csv", "x,y,label\n0,1,0\n1,2,1\n", "label", "option 'label' needs a value"),
        ("all.csv", "x,label\n0,0\n1,1\n", "label=last&cond=first", "leave at least one coordinate"),
    ];
    for (name, text, options, want) in cases {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        let err = parse_target(&format!("file:{}?{options}", p.display())).err().unwrap().to_string();
        assert!(err.contains(want), "{name}: '{err}' lacks '{want}'");
        assert!(!err.contains('\n'), "{err}");
    }
    // A labels file of another length.
    let pts = d.join("three.npy");
    fm_dist::io::write_npy(&pts, array![[0.0], [1.0], [2.0]].view()).unwrap();
    let short = d.join("two.npy");
    fm_dist::io::write_npy(&short, array![[0i64], [1]].view()).unwrap();
    let err = PointCloud::open(&format!("{}?labels={}", pts.display(), short.display())).unwrap_err().to_string();
    assert!(err.contains("2 labels for 3 points"), "{err}");
}
