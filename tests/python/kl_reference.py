"""An independent PyTorch computation of a flow-matching model's log-likelihood and of KL(target || model).

usage: kl_reference.py CHECKPOINT POINTS OUT [--steps N] [--dtype float64|float32] [--threads N]

  CHECKPOINT  a seed-architecture model (fm_model::checkpoint::save): read with
              safetensors.torch.load_file into nn.Sequential(Linear(3,128), ReLU, ..., Linear(128,2))
  POINTS      an n x 2 .npy of target samples (written by fm_dist::io::write_npy)
  OUT         the JSON report written here: log_q and log_p per point, kl, kl_se, nll, entropy

log q(x) = log N(x0; 0, I) - int_0^1 div v(x_t, t) dt, with x_t carried back from t = 1 to 0 by
classic RK4 (N equal steps, default 200) on the augmented state [x, l], dl/dt = div v; the
divergence is exact: one torch.autograd.grad pass per dimension. log p is the seed's
3-component mixture, computed here from its parameters with torch.distributions. The network
runs in float64 by default (the float32 weights converted exactly), so the result is a
reference for fm-rs's float32 computation, not a copy of it.
"""

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

p = argparse.ArgumentParser()
p.add_argument("checkpoint")
p.add_argument("points")
p.add_argument("out")
p.add_argument("--steps", type=int, default=200)
p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dtype = getattr(torch, a.dtype)
start = time.perf_counter()

state = load_file(a.checkpoint)
net = nn.Sequential(nn.Linear(3, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()}, strict=True)
net = net.to(dtype)
for param in net.parameters():
    param.requires_grad_(False)

x = torch.from_numpy(np.load(a.points)).to(dtype)
n, d = x.shape
assert d == 2, f"expected n x 2 points, got {tuple(x.shape)}"


def field(x, t):
    """v(x, t) and its exact divergence, rows independent."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = net(torch.cat([x, torch.full((x.shape[0], 1), t, dtype=dtype)], dim=1))
        div = torch.zeros(x.shape[0], dtype=dtype)
        for i in range(d):
            (g,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=i + 1 < d)
            div = div + g[:, i]
    return v.detach(), div.detach()


# RK4 on [x, l] from t = 1 to t = 0: l(0) = int_1^0 div v dt = -int_0^1 div v dt.
h = -1.0 / a.steps
xs, l = x.clone(), torch.zeros(n, dtype=dtype)
for k in range(a.steps):
    t = 1.0 + k * h
    v1, d1 = field(xs, t)
    v2, d2 = field(xs + 0.5 * h * v1, t + 0.5 * h)
    v3, d3 = field(xs + 0.5 * h * v2, t + 0.5 * h)
    v4, d4 = field(xs + h * v3, t + h)
    xs = xs + h / 6.0 * (v1 + 2 * v2 + 2 * v3 + v4)
    l = l + h / 6.0 * (d1 + 2 * d2 + 2 * d3 + d4)
log_source = -0.5 * (xs**2).sum(dim=1) - 0.5 * d * math.log(2 * math.pi)
log_q = (log_source + l).double()

# The seed's target (the seed post's weights, means and covariances).
weights = torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64)
means = torch.tensor([[-2.0, -1.0], [1.0, 3.0], [4.0, -2.0]], dtype=torch.float64)
covs = torch.tensor([[[0.5, 0.1], [0.1, 0.4]], [[0.6, -0.2], [-0.2, 0.5]], [[0.4, 0.0], [0.0, 0.6]]], dtype=torch.float64)
mixture = torch.distributions.MixtureSameFamily(
    torch.distributions.Categorical(probs=weights), torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
)
log_p = mixture.log_prob(x.double())

diff = log_p - log_q
report = {
    "n": n,
    "steps": a.steps,
    "dtype": a.dtype,
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "log_q": log_q.tolist(),
    "log_p": log_p.tolist(),
    "kl": diff.mean().item(),
    "kl_se": (diff.std(unbiased=True) / math.sqrt(n)).item(),
    "nll": -log_q.mean().item(),
    "entropy": -log_p.mean().item(),
    "nfe": 4 * a.steps,
    "seconds": time.perf_counter() - start,
}
with open(a.out, "w") as f:
    json.dump(report, f)
print(json.dumps({k: v for k, v in report.items() if k not in ("log_q", "log_p")}))
