//! The MLP and its checkpoints.

use fm_model::{checkpoint, Activation, Mlp, MlpConfig};
use fm_ode::VectorField;
use tch::{Device, Kind, Tensor};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fm-model-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join("model.safetensors")
}

fn batch() -> (Tensor, Tensor) {
    tch::manual_seed(3);
    (Tensor::randn([16, 2], (Kind::Float, Device::Cpu)), Tensor::rand([16, 1], (Kind::Float, Device::Cpu)))
}

#[test]
fn parameter_names_follow_the_seeds_sequential() {
    let mlp = Mlp::new(MlpConfig::default(), Device::Cpu).unwrap();
    let mut names: Vec<_> = mlp.var_store().variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    names.sort();
    let expected = vec![
        ("net.0.bias".to_string(), vec![128]),
        ("net.0.weight".to_string(), vec![128, 3]),
        ("net.2.bias".to_string(), vec![128]),
        ("net.2.weight".to_string(), vec![128, 128]),
        ("net.4.bias".to_string(), vec![128]),
        ("net.4.weight".to_string(), vec![128, 128]),
        ("net.6.bias".to_string(), vec![2]),
        ("net.6.weight".to_string(), vec![2, 128]),
    ];
    assert_eq!(names, expected);
}

#[test]
fn velocity_at_one_time_equals_forward_on_the_concatenation() {
    for time_embedding in [0, 2, 16] {
        let mlp = Mlp::new(MlpConfig { time_embedding, ..MlpConfig::default() }, Device::Cpu).unwrap();
        let (x, _) = batch();
        let t = Tensor::full([16, 1], 0.3, (Kind::Float, Device::Cpu));
        let a = mlp.forward(&x, &t).unwrap();
        let b = mlp.velocity(&x, 0.3).unwrap();
        // Float32 sums in another order: equal to rounding.
        let diff = f64::try_from((&a - &b).abs().max()).unwrap();
        assert!(diff < 1e-5 * (1.0 + f64::try_from(a.abs().max()).unwrap()), "time_embedding {time_embedding}: max difference {diff}");
    }
}

#[test]
fn the_time_embedding_feeds_sines_and_cosines_of_geometric_frequencies() {
    let cfg = MlpConfig { time_embedding: 8, ..MlpConfig::default() };
    let w = cfg.time_frequencies();
    assert_eq!(w.len(), 4);
    assert!((w[0] - 1.0).abs() < 1e-12 && (w[3] - 100.0).abs() < 1e-9 && (w[1] * w[1] - w[0] * w[2]).abs() < 1e-9, "{w:?}");
    assert_eq!(cfg.parameter_shapes()[0].1, vec![128, 2 + 8]);
    // A network whose first layer reads only the time inputs, with weights picking sin(ω_2 t)
    // for unit 0 and cos(ω_1 t) for unit 1: the embedding's values and order are visible.
    tch::manual_seed(0);
    let mlp = Mlp::new(MlpConfig { hidden_dim: 2, hidden_layers: 1, ..cfg.clone() }, Device::Cpu).unwrap();
    tch::no_grad(|| {
        let vars = mlp.var_store().variables();
        let w0 = Tensor::zeros([2, 10], (Kind::Float, Device::Cpu));
        let _ = w0.get(0).get(2 + 1).fill_(1.0); // sin(ω_2 t)
        let _ = w0.get(1).get(2 + 4).fill_(1.0); // cos(ω_1 t)
        vars["net.0.weight"].shallow_clone().copy_(&w0);
        let _ = vars["net.0.bias"].shallow_clone().fill_(2.0); // keeps the ReLU open
        vars["net.2.weight"].shallow_clone().copy_(&Tensor::eye(2, (Kind::Float, Device::Cpu)));
        let _ = vars["net.2.bias"].shallow_clone().fill_(-2.0);
    });
    let t = 0.37;
    let v = Vec::<f32>::try_from(mlp.velocity(&Tensor::zeros([1, 2], (Kind::Float, Device::Cpu)), t).unwrap().flatten(0, -1)).unwrap();
    assert!((v[0] as f64 - (w[1] * t).sin()).abs() < 1e-5 && (v[1] as f64 - (w[0] * t).cos()).abs() < 1e-5, "{v:?}");
    assert!(Mlp::new(MlpConfig { time_embedding: 3, ..MlpConfig::default() }, Device::Cpu).unwrap_err().to_string().contains("even"));
}

#[test]
fn checkpoint_round_trip_is_bit_exact_with_metadata() {
    for activation in Activation::ALL {
        let cfg = MlpConfig {
            dim: 3,
            hidden_dim: 17,
            hidden_layers: 2,
            activation,
            time_embedding: if activation == Activation::Silu { 6 } else { 0 },
            time_inputs: 1,
            ..MlpConfig::default()
        };
        let mlp = Mlp::new(cfg.clone(), Device::Cpu).unwrap();
        let path = tmp(activation.name());
        let extra = [("note".to_string(), "hello".to_string())].into_iter().collect();
        checkpoint::save(&mlp, &path, &extra).unwrap();
        let (back, meta) = checkpoint::load(&path, Device::Cpu).unwrap();
        assert_eq!(crate::config(&*back), cfg);
        assert_eq!(meta["note"], "hello");
        assert_eq!(meta["format"], checkpoint::FORMAT);
        for (name, v) in mlp.var_store().variables() {
            let w = &crate::params(&*back)[&name];
            assert!(v.equal(w), "{name} differs after the round trip");
        }
        // Same bytes when written again.
        assert_eq!(checkpoint::to_bytes(&*back, &extra).unwrap(), std::fs::read(&path).unwrap());
    }
}

#[test]
fn a_plain_pytorch_safetensors_infers_its_architecture() {
    // Written without our metadata, as safetensors.torch.save_file(net.state_dict()) would.
    let mlp = Mlp::new(MlpConfig { hidden_dim: 64, hidden_layers: 4, ..MlpConfig::default() }, Device::Cpu).unwrap();
    let vars = mlp.var_store().variables();
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = vars
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.size().iter().map(|&s| s as usize).collect(),
                Vec::<f32>::try_from(v.flatten(0, -1)).unwrap().iter().flat_map(|f| f.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = data.iter().map(|(k, s, b)| (k.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()));
    let bytes = safetensors::serialize(views, None).unwrap();
    let err = checkpoint::from_bytes(&bytes, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("does not record its network's activation"), "never a guessed activation: {err}");
    let opts = checkpoint::LoadOptions::with_activation(mlp.config().activation);
    let (back, _) = checkpoint::from_any_bytes(&bytes, Device::Cpu, &opts).unwrap();
    assert_eq!(&crate::config(&*back), mlp.config());
}

fn load_err(bytes: &[u8]) -> String {
    checkpoint::from_bytes(bytes, Device::Cpu).unwrap_err().to_string()
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let mlp = Mlp::new(MlpConfig::default(), Device::Cpu).unwrap();
    let good = checkpoint::to_bytes(&mlp, &Default::default()).unwrap();
    assert!(load_err(b"garbage").contains("not a valid safetensors file"));
    for cut in [0, 7, 8, 100, good.len() / 2, good.len() - 1] {
        assert!(load_err(&good[..cut]).contains("not a valid safetensors file"), "cut at {cut}");
    }
    let missing = checkpoint::load(std::path::Path::new("/nonexistent/model.safetensors"), Device::Cpu).unwrap_err().to_string();
    assert!(missing.contains("/nonexistent/model.safetensors") && missing.contains("No such file"), "{missing}");

    // Other versions and lying configs: edits of equal length keep the header valid.
    let newer = replace(&good, br#""format_version":"1""#, br#""format_version":"9""#);
    assert!(load_err(&newer).contains("newer fm (format version 9)"));
    let foreign = replace(&good, br#""format":"fm-rs/mlp""#, br#""format":"fm-rs/xyz""#);
    assert!(load_err(&foreign).contains("not an fm model checkpoint"));

    // A network of another shape than its config says.
    let small = Mlp::new(MlpConfig { hidden_dim: 8, ..MlpConfig::default() }, Device::Cpu).unwrap();
    let small_bytes = checkpoint::to_bytes(&small, &Default::default()).unwrap();
    let lying = replace(&small_bytes, br#"hidden_dim\":8"#, br#"hidden_dim\":9"#);
    let err = load_err(&lying);
    assert!(err.contains("tensor 'net.0.weight' has shape [8, 3], expected [9, 3]"), "{err}");
}

#[test]
fn bad_configs_are_errors() {
    assert!(Mlp::new(MlpConfig { hidden_dim: 0, ..MlpConfig::default() }, Device::Cpu).is_err());
    assert!(Mlp::new(MlpConfig { hidden_layers: 0, ..MlpConfig::default() }, Device::Cpu).is_err());
    // Sizes beyond what memory could hold are configuration errors, before any allocation.
    let err = Mlp::new(MlpConfig { hidden_dim: 1_000_000, ..MlpConfig::default() }, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("more than the 268435456 allowed"), "{err}");
    assert!(Mlp::new(MlpConfig { hidden_layers: usize::MAX, hidden_dim: usize::MAX, dim: usize::MAX, ..MlpConfig::default() }, Device::Cpu).is_err());
    let seed = MlpConfig::default();
    assert_eq!(seed.parameter_count(), seed.parameter_shapes().iter().map(|(_, s)| s.iter().product::<i64>() as u128).sum());
    assert!("tanh".parse::<Activation>().unwrap_err().to_string().contains("relu, silu, gelu, selu, elu"));
    let mlp = Mlp::new(MlpConfig::default(), Device::Cpu).unwrap();
    let err = mlp.velocity(&Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)), 0.0).unwrap_err().to_string();
    assert!(err.contains("[n, 2]"), "{err}");
}

#[test]
fn cuda_without_a_gpu_is_an_error_naming_the_problem() {
    if tch::Cuda::is_available() {
        assert!(fm_model::parse_device("cuda").is_ok());
    } else {
        let err = fm_model::parse_device("cuda").unwrap_err().to_string();
        assert!(err.contains("CUDA is not available"), "{err}");
    }
    assert_eq!(fm_model::parse_device("cpu").unwrap(), Device::Cpu);
    assert!(fm_model::parse_device("tpu").unwrap_err().to_string().contains("auto, cpu, cuda, cuda:N"));
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).expect("pattern present");
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// `bytes` (a safetensors file) with `from` replaced by `to` in its JSON header, and the header
/// length in front fixed to match.
fn edit_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.contains(from), "{from} is not in {header}");
    let header = header.replacen(from, to, 1);
    [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), &bytes[8 + n..]].concat()
}

/// Found by the fuzzer (tests/fuzz/regressions/checkpoint): the model a checkpoint's config
/// describes was built before its tensors were checked against it, so 2³² hidden layers asked
/// for a 64 GiB list of layer sizes, and layers 2²⁰ wide for 4 TiB from libtorch (a panic).
#[test]
fn a_config_larger_than_the_file_is_refused_before_the_model_is_built() {
    let small = Mlp::new(MlpConfig { hidden_dim: 4, hidden_layers: 2, ..MlpConfig::default() }, Device::Cpu).unwrap();
    let good = checkpoint::to_bytes(&small, &Default::default()).unwrap();
    for (from, to) in [
        (r#"hidden_layers\":2"#, r#"hidden_layers\":4294967296"#),
        (r#"hidden_dim\":4"#, r#"hidden_dim\":1048576"#),
        (r#"{\"dim\":2"#, r#"{\"dim\":1099511627776"#),
    ] {
        let err = load_err(&edit_header(&good, from, to));
        assert!(err.contains("has more parameters than the checkpoint holds (6 tensors, 46 values in all)"), "{to}: {err}");
    }
    // The same through the .pth reader, and for the architecture a caller expects.
    let pth = checkpoint::to_pth_bytes(&small, &Default::default()).unwrap();
    let opts = checkpoint::LoadOptions { config: Some(MlpConfig { hidden_dim: 1 << 20, hidden_layers: 2, ..MlpConfig::default() }), ..Default::default() };
    let err = checkpoint::from_any_bytes(&pth, Device::Cpu, &opts).unwrap_err().to_string();
    assert!(err.contains("differs from the expected"), "{err}");
    let plain = checkpoint::encode_safetensors(&small.var_store().variables().into_iter().collect::<Vec<_>>(), &Default::default()).unwrap();
    let err = checkpoint::from_any_bytes(&plain, Device::Cpu, &opts).unwrap_err().to_string();
    assert!(err.contains("has more parameters than the checkpoint holds"), "{err}");
}

/// The written-out backward pass of the training loss (`Mlp::mse_backward`) gives autograd's
/// loss and gradients bit for bit, for every activation it covers, with and without a time
/// embedding; it overwrites what the gradients held; without gradients to write into, or for
/// SELU, it declines and touches nothing.
#[test]
fn mse_backward_is_autograd_bit_for_bit() {
    let bits = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap().into_iter().map(f32::to_bits).collect::<Vec<u32>>();
    for activation in [Activation::Relu, Activation::Gelu, Activation::Silu, Activation::Selu] {
        for (time_embedding, hidden_layers) in [(0, 3), (8, 2), (0, 1)] {
            let config = MlpConfig { activation, time_embedding, hidden_layers, hidden_dim: 48, ..MlpConfig::default() };
            let mlp = Mlp::new(config.clone(), Device::Cpu).unwrap();
            let (x, t) = batch();
            let target = Tensor::randn([16, 2], (Kind::Float, Device::Cpu));
            let params = mlp.var_store().trainable_variables();
            assert!(mlp.mse_backward(&x, &t, &target).unwrap().is_none(), "no .grad yet: {config:?}");
            assert!(params.iter().all(|p| !p.grad().defined()));

            let loss = mlp.forward(&x, &t).unwrap().mse_loss(&target, tch::Reduction::Mean);
            loss.backward();
            let want: Vec<Vec<u32>> = params.iter().map(|p| bits(&p.grad())).collect();
            tch::no_grad(|| params.iter().for_each(|p| drop(p.grad().fill_(f64::NAN))));

            let written = mlp.mse_backward(&x, &t, &target).unwrap();
            if activation == Activation::Selu {
                assert!(written.is_none());
                assert!(params.iter().all(|p| bits(&p.grad()).iter().all(|b| f32::from_bits(*b).is_nan())), "SELU touched a gradient");
                continue;
            }
            assert_eq!(bits(&written.unwrap()), bits(&loss), "loss, {config:?}");
            let got: Vec<Vec<u32>> = params.iter().map(|p| bits(&p.grad())).collect();
            assert!(got == want, "gradients differ from autograd's: {config:?}");
        }
    }
}

/// The network's own exact divergence (the Jacobian's rows carried back together, in groups
/// when a block would outgrow the cache: 3,000 rows go 2 + 1, 4,096 one by one) equals
/// autograd's, one backward pass per dimension, to float rounding; the velocity it returns is
/// `velocity`'s. SELU and ELU decline.
#[test]
fn written_out_divergence_matches_autograd() {
    for activation in Activation::ALL {
        for (dim, time_embedding, hidden_layers, rows) in [(2, 0, 3, 64), (3, 8, 2, 64), (2, 0, 1, 64), (3, 0, 2, 3000), (3, 0, 2, 4096)] {
            let config = MlpConfig { dim, activation, time_embedding, hidden_layers, hidden_dim: 40, time_inputs: 1, ..MlpConfig::default() };
            let mlp = Mlp::new(config.clone(), Device::Cpu).unwrap();
            let x = Tensor::randn([rows, dim as i64], (Kind::Float, Device::Cpu));
            let t = 0.37;
            let Some((v, div)) = mlp.velocity_and_divergence(&x, t).unwrap_or_else(|e| panic!("{config:?}: {e}")) else {
                assert!(matches!(activation, Activation::Selu | Activation::Elu), "declined: {config:?}");
                continue;
            };
            assert!(!matches!(activation, Activation::Selu | Activation::Elu));
            let xg = x.detach().set_requires_grad(true);
            let want_v = tch::with_grad(|| mlp.velocity(&xg, t).unwrap());
            let mut want = Tensor::zeros([rows], (Kind::Float, Device::Cpu));
            for k in 0..dim as i64 {
                let g = Tensor::run_backward(&[want_v.select(1, k).sum(Kind::Float)], &[&xg], true, false).remove(0);
                want += g.select(1, k);
            }
            assert!(v.allclose(&want_v.detach(), 1e-6, 1e-6, false), "velocity, {config:?}");
            let err = f64::try_from((&div - &want).abs().max()).unwrap();
            let scale = f64::try_from(want.abs().max()).unwrap();
            assert!(err <= 1e-5 * (1.0 + scale), "divergence off by {err} (scale {scale}): {config:?}");
            // Not the trace of something else: the divergence varies with x and is not ~0.
            assert!(scale > 1e-3, "{config:?}");
        }
    }
}

/// Both built-in architectures save and load bit for bit, each as itself, and a checkpoint of
/// one refuses to load into the other, naming both.
#[test]
fn both_architectures_round_trip_and_refuse_each_other_by_name() {
    use fm_model::registry;
    let dir = std::env::temp_dir().join(format!("fm-model-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mlp_cfg = MlpConfig { hidden_dim: 16, hidden_layers: 2, ..MlpConfig::default() };
    let res_cfg = MlpConfig { kind: registry::RESMLP.into(), ..mlp_cfg.clone() };
    let mut files = Vec::new();
    for cfg in [&mlp_cfg, &res_cfg] {
        let model = fm_model::with_torch_seed(3, || registry::build(cfg, Device::Cpu)).unwrap();
        let path = dir.join(format!("{}.safetensors", cfg.kind));
        checkpoint::save(&*model, &path, &Default::default()).unwrap();
        let (back, _) = checkpoint::load(&path, Device::Cpu).unwrap();
        assert_eq!(back.architecture(), model.architecture());
        assert_eq!(checkpoint::to_bytes(&*back, &Default::default()).unwrap(), std::fs::read(&path).unwrap(), "{}", cfg.kind);
        let x = Tensor::randn([7, 2], (tch::Kind::Float, Device::Cpu));
        assert!(back.velocity(&x, 0.3).unwrap().equal(&model.velocity(&x, 0.3).unwrap()));
        files.push((path, model));
    }
    assert_eq!(files[1].1.architecture().kind, "fm-rs/resmlp");
    assert_eq!(crate::config(&*files[1].1).sinusoidal_features(), fm_model::ResMlp::TIME_FEATURES, "a residual MLP always embeds its times");
    for (from, into) in [(0, 1), (1, 0)] {
        let err = checkpoint::load_into(&*files[into].1, &files[from].0).unwrap_err().to_string();
        let (a, b) = (files[from].1.architecture().kind, files[into].1.architecture().kind);
        assert!(err.contains(&format!("holds a {a} model")) && err.contains(&format!("not the {b} model")), "{err}");
    }
    // An unknown kind is a one-line error naming the known ones.
    let err = registry::build(&MlpConfig { kind: "transformer".into(), ..mlp_cfg }, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("unknown model 'transformer' (valid: mlp, resmlp"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
