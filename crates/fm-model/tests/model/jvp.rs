//! Average-velocity networks (two time inputs) and the Jacobian-vector product MeanFlow trains with.

use fm_model::{jvp_autograd, Activation, Mlp, MlpConfig, VelocityModel};
use fm_ode::VectorField;
use tch::{Device, Kind, Tensor};

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

fn inputs(k: i64) -> (Tensor, Tensor, Tensor, Tensor) {
    tch::manual_seed(11);
    let opts = (Kind::Float, Device::Cpu);
    (Tensor::randn([32, 3], opts), Tensor::rand([32, k], opts), Tensor::randn([32, 3], opts), Tensor::randn([32, k], opts))
}

fn network(activation: Activation, time_embedding: usize, time_inputs: usize) -> Mlp {
    let cfg = MlpConfig { dim: 3, hidden_dim: 24, hidden_layers: 3, activation, time_embedding, time_inputs, ..MlpConfig::default() };
    fm_model::with_torch_seed(5, || Mlp::new(cfg, Device::Cpu)).unwrap()
}

/// The written-out forward-mode derivative is autograd's (double-vjp) and a central finite
/// difference's, for every activation, raw and embedded times, one and two time inputs.
#[test]
fn the_written_out_jvp_agrees_with_autograd_and_finite_differences() {
    for activation in Activation::ALL {
        for (time_embedding, time_inputs) in [(0, 1), (0, 2), (8, 2)] {
            let mlp = network(activation, time_embedding, time_inputs);
            let (x, t, dx, dt) = inputs(time_inputs as i64);
            let (f, j) = mlp.jvp(&x, &t, &dx, &dt).unwrap();
            let (f_ref, j_ref) = jvp_autograd(&mlp, &x, &t, &dx, &dt).unwrap();
            let what = format!("{activation}, embedding {time_embedding}, {time_inputs} time input(s)");
            assert!(max_abs(&(&f - &f_ref)) < 1e-6, "{what}: outputs differ");
            // Float32 sums in another order.
            assert!(max_abs(&(&j - &j_ref)) < 1e-5 * (1.0 + max_abs(&j_ref)), "{what}: jvp {} from autograd's", max_abs(&(&j - &j_ref)));
            // A central difference in double precision (ReLU kinks are crossed with probability ~h).
            let h = 1e-6;
            let double = |a: &Tensor| a.to_kind(Kind::Double);
            // The same weights copied (not drawn again: another test thread drawing from torch's
            // generator between the two draws would change them), in double precision.
            let mlp64 = {
                let mut m = network(activation, time_embedding, time_inputs);
                fm_model::copy_parameters(&m, &fm_model::VelocityModel::named_parameters(&mlp)).unwrap();
                m.var_store_mut().double();
                m
            };
            let at = |s: f64| mlp64.forward(&(double(&x) + double(&dx) * s), &(double(&t) + double(&dt) * s)).unwrap();
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let err = (&j.to_kind(Kind::Double) - &fd).abs().max_dim(1, false).0;
            // The share of rows off by more than rounding: rows across a ReLU kink only.
            let off = f64::try_from(err.gt(1e-3 * (1.0 + max_abs(&fd))).to_kind(Kind::Double).mean(Kind::Double)).unwrap();
            assert!(off <= if activation == Activation::Relu { 0.1 } else { 0.0 }, "{what}: {off} of the rows differ from finite differences");
        }
    }
}

/// An average-velocity network at `r = t` is a velocity field: `velocity(x, t)` is `u(x, t, t)`.
#[test]
fn an_average_velocity_network_at_equal_times_is_its_velocity_field() {
    for time_embedding in [0, 8] {
        let mlp = network(Activation::Gelu, time_embedding, 2);
        assert_eq!(VelocityModel::time_inputs(&mlp), 2);
        let (x, _, _, _) = inputs(2);
        let u = mlp.forward(&x, &Tensor::full([32, 2], 0.7, (Kind::Float, Device::Cpu))).unwrap();
        let v = mlp.velocity(&x, 0.7).unwrap();
        assert!(max_abs(&(&u - &v)) < 1e-5, "embedding {time_embedding}");
        let v2 = fm_model::velocity_at(&mlp, &x, 0.7).unwrap();
        assert!(max_abs(&(&u - &v2)) < 1e-6);
    }
}

#[test]
fn times_of_the_wrong_width_are_refused() {
    let mlp = network(Activation::Relu, 0, 2);
    let (x, t1, _, _) = inputs(1);
    let err = mlp.forward(&x, &t1).unwrap_err().to_string();
    assert!(err.contains("two times per row"), "{err}");
    let bad = MlpConfig { time_inputs: 3, ..MlpConfig::default() }.validate().unwrap_err().to_string();
    assert!(bad.contains("time_inputs"), "{bad}");
}

/// The seed's network writes no `time_inputs` into its checkpoints (old files and new compare
/// equal), and an average-velocity network's round-trips.
#[test]
fn time_inputs_round_trip_through_a_checkpoint() {
    let json = serde_json::to_string(&MlpConfig::default()).unwrap();
    assert!(!json.contains("time_inputs"), "{json}");
    let mlp = network(Activation::Silu, 4, 2);
    let bytes = fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap();
    let (back, _) = fm_model::checkpoint::from_bytes(&bytes, Device::Cpu).unwrap();
    assert_eq!(&crate::config(&*back), mlp.config());
    let (x, t, _, _) = inputs(2);
    assert!(max_abs(&(mlp.forward(&x, &t).unwrap() - back.forward(&x, &t).unwrap())) == 0.0);
}
