//! With an unusable `FM_FONT`, figures fail with an error that says so (no panic). Alone in
//! its test binary: the font is registered once per process.

mod common;

#[test]
fn an_unreadable_font_is_an_error_that_names_it() {
    std::env::set_var("FM_FONT", "/nonexistent/font.ttf");
    let dir = common::dir("font");
    let (states, times) = common::straight_paths(&common::gmm(), 5, 2);
    let err = fm_viz::trajectories(&dir.join("f.png"), states.view(), &times, None, &fm_viz::TrajectoryFigure::default()).unwrap_err();
    assert!(matches!(err, fm_viz::Error::Font(_)));
    assert!(err.to_string().contains("FM_FONT"), "{err}");
    let err = fm_viz::loss(&dir.join("l.png"), ndarray::Array2::<f64>::ones((2, 2)).view(), &[], &fm_viz::LossFigure::default()).unwrap_err();
    assert!(err.to_string().contains("font"), "{err}");
    assert!(common::files(&dir).is_empty());
}
