//! The one boundary between `fm-dist`'s `f64` arrays and the model's `f32` tensors.

use crate::Result;
use ndarray::{Array2, ArrayView2};
use tch::{Device, Kind, Tensor};

/// An `n × d` array as a `[n, d]` float32 tensor on `device`.
///
/// # Errors
/// [`crate::Error::Torch`] when the tensor cannot be built or moved to `device`.
pub fn array_to_tensor(a: ArrayView2<f64>, device: Device) -> Result<Tensor> {
    let (n, d) = a.dim();
    let values: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    Ok(Tensor::from_slice(&values).f_reshape([n as i64, d as i64])?.f_to_device(device)?)
}

/// A `[n, d]` tensor (any device, any float kind) as an `n × d` array of `f64`.
///
/// # Errors
/// [`crate::Error::Config`] for a tensor that is not 2-D; [`crate::Error::Torch`] when it
/// cannot be copied to the host.
pub fn tensor_to_array(t: &Tensor) -> Result<Array2<f64>> {
    let size = t.size();
    let (n, d) = match size[..] {
        [n, d] => (n as usize, d as usize),
        _ => return Err(crate::Error::Config(format!("expected a 2-D tensor, got shape {size:?}"))),
    };
    let values = Vec::<f64>::try_from(t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?.f_flatten(0, -1)?)?;
    Ok(Array2::from_shape_vec((n, d), values).expect("length n*d"))
}
