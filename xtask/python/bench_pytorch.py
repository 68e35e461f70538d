"""The PyTorch side of `cargo xtask bench`: the same work as `cargo run --release -p fm-train --example bench`,
as an efficient PyTorch eager script. Prints one JSON line with the same keys as the Rust side.

Work, in order (each phase timed on its own, its peak RSS measured after resetting the high-water mark; one
untimed training step on a throwaway network first, so one-time initialisation is not counted):
  train   `--train-steps` Adam steps on batches of `--batch`: x0 ~ N(0, I), x1 ~ the mixture (drawn on the
          tensor side: multinomial component indices, batched Cholesky factors times normals), t ~ U(0, 1),
          loss |v(x_t, t) - (x1 - x0)|^2; the loss is summed on the tensor side and read every 100 steps
          (as the Rust loop does);
  euler   `--samples` source draws carried from t = 0 to 1 by `--euler-steps` Euler steps, inference mode;
  rk4     the same with `--rk4-steps` RK4 steps;
  lik     log q(x) of `--lik-points` mixture draws: [x, l] carried from t = 1 to 0 by `--lik-steps` RK4 steps,
          div v exact (one torch.autograd.grad per dimension), `--lik-chunk` rows at a time, + log N(x0; 0, I).

On `--device cuda` everything runs on the GPU, the mixture drawn there too; each phase ends with
torch.cuda.synchronize(), so its time includes the GPU's work. `--cuda-graph` (CUDA only) captures the
whole training step (draws, forward, backward, Adam with capturable=True) once as a CUDA graph after
three eager warm-up steps, and replays it for the remaining steps (the capture counted in the time).

The network is the seed's nn.Sequential(Linear(d+1, w), ReLU, [Linear(w, w), ReLU] x (layers-1), Linear(w, d)),
the optimiser torch.optim.Adam (its fastest CPU implementation by default: --adam fused).

Usage: python bench_pytorch.py run [--target gmm3|spec:FILE.json] [--width W] [--layers L] [--batch B]
         [--train-steps N] [--samples N] [--euler-steps N] [--rk4-steps N] [--lik-points N] [--lik-steps N]
         [--lik-chunk N] [--sample-chunk N] [--threads N] [--seed S] [--adam fused|foreach|single]
         [--device cpu|cuda] [--cuda-graph] [--out-samples X.npy]
"""
import argparse
import json
import math
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn


def peak_rss_kb():
    """VmHWM of this process, in kB (None where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return None


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux ≥ 4.0), so the next reading is one phase's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def seed_mixture():
    weights = [0.3, 0.5, 0.2]
    means = [[-2.0, -1.0], [1.0, 3.0], [4.0, -2.0]]
    covs = [[[0.5, 0.1], [0.1, 0.4]], [[0.6, -0.2], [-0.2, 0.5]], [[0.4, 0.0], [0.0, 0.6]]]
    return weights, means, covs


def spec_mixture(path):
    """A mixture spec (the JSON form of fm_dist::MixtureSpec: weight, mean, one of cov/diag/var)."""
    with open(path) as f:
        spec = json.load(f)
    comps = spec["components"]
    k = len(comps)
    d = len(comps[0]["mean"])
    weights, means, covs = [], [], []
    for c in comps:
        weights.append(c.get("weight", 1.0 / k))
        means.append(c["mean"])
        if "cov" in c:
            covs.append(c["cov"])
        elif "diag" in c:
            covs.append(np.diag(c["diag"]).tolist())
        else:
            covs.append((np.eye(d) * c["var"]).tolist())
    return weights, means, covs


class Mixture:
    def __init__(self, target, device):
        if target == "gmm3":
            w, m, c = seed_mixture()
        elif target.startswith("spec:"):
            w, m, c = spec_mixture(target[len("spec:"):])
        else:
            raise SystemExit(f"bench_pytorch.py: unknown target '{target}' (gmm3 or spec:FILE.json)")
        self.weights = torch.tensor(w, dtype=torch.float32)
        self.weights = self.weights / self.weights.sum()
        self.means = torch.tensor(m, dtype=torch.float32)
        self.chol = torch.linalg.cholesky(torch.tensor(c, dtype=torch.float64)).to(torch.float32)
        self.weights, self.means, self.chol = self.weights.to(device), self.means.to(device), self.chol.to(device)
        self.cumulative = self.weights.cumsum(0)
        self.dim = self.means.shape[1]
        self.device = device

    def sample(self, n, capturable=False):
        if capturable:
            # Inverse CDF: no host synchronisation, so it can sit inside a CUDA graph.
            u = torch.rand(n, device=self.device) * self.cumulative[-1]
            k = torch.searchsorted(self.cumulative, u, right=True).clamp_(max=len(self.cumulative) - 1)
        else:
            k = torch.multinomial(self.weights, n, replacement=True)
        z = torch.randn(n, self.dim, 1, device=self.device)
        return self.means[k] + torch.bmm(self.chol[k], z).squeeze(-1)


def make_net(d, width, layers):
    mods = [nn.Linear(d + 1, width), nn.ReLU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(width, width), nn.ReLU()]
    mods.append(nn.Linear(width, d))
    return nn.Sequential(*mods)


def velocity(net, x, t):
    """v(x, t) for all rows at one time t."""
    return net(torch.cat([x, x.new_full((x.shape[0], 1), t)], dim=1))


def synchronize(a):
    if a.device != "cpu":
        torch.cuda.synchronize()


def train(net, mix, a):
    if a.cuda_graph:
        return train_graphed(net, mix, a)
    kw = {"fused": True} if a.adam == "fused" else {"foreach": True} if a.adam == "foreach" else {"foreach": False}
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, **kw)
    n = a.batch
    window = torch.zeros((), device=a.device)
    window_start, final_loss = 0, float("nan")
    t0 = time.perf_counter()
    for step in range(1, a.train_steps + 1):
        loss = fm_loss(net, mix, n, a.device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window += loss.detach()
        if step % 100 == 0 or step == a.train_steps:
            final_loss = read_window(window, step, window_start)
            window_start = step
    return time.perf_counter() - t0, final_loss


def fm_loss(net, mix, n, device, capturable=False):
    """|v(x_t, t) - (x1 - x0)|^2 on a fresh batch: x0 ~ N(0, I), x1 ~ the mixture, t ~ U(0, 1)."""
    x0 = torch.randn(n, mix.dim, device=device)
    x1 = mix.sample(n, capturable)
    t = torch.rand(n, 1, device=device)
    xt = (1 - t) * x0 + t * x1
    return nn.functional.mse_loss(net(torch.cat([xt, t], dim=-1)), x1 - x0)


def read_window(window, step, window_start):
    """The mean loss since `window_start` (a read from the device), then an empty window."""
    mean = window.item() / (step - window_start)
    if not math.isfinite(mean):
        raise SystemExit(f"bench_pytorch.py: training diverged: loss {mean} at step {step}")
    window.zero_()
    return mean


def train_graphed(net, mix, a):
    """train(), the whole step captured once as a CUDA graph and replayed."""
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, fused=True, capturable=True)
    n = a.batch
    window = torch.zeros((), device=a.device)

    def step():
        loss = fm_loss(net, mix, n, a.device, capturable=True)
        loss.backward()
        opt.step()
        window.add_(loss.detach())

    t0 = time.perf_counter()
    warm = min(3, a.train_steps)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warm):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    window_start, final_loss = 0, float("nan")
    for s in range(warm + 1, a.train_steps + 1):
        graph.replay()
        if s % 100 == 0 or s == a.train_steps:
            final_loss = read_window(window, s, window_start)
            window_start = s
    synchronize(a)
    return time.perf_counter() - t0, final_loss


def sample(net, d, a, steps, method):
    """Samples from t = 0 to 1 (`--sample-chunk` rows at a time, 0: all at once), inference mode."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = torch.randn(a.samples, d, device=a.device)
        chunk = a.sample_chunk or a.samples
        parts = []
        dt = 1.0 / steps
        for xc in x.split(chunk):
            for i in range(steps):
                t = i * dt
                if method == "euler":
                    xc = xc + dt * velocity(net, xc, t)
                else:
                    k1 = velocity(net, xc, t)
                    k2 = velocity(net, xc + (dt / 2) * k1, t + dt / 2)
                    k3 = velocity(net, xc + (dt / 2) * k2, t + dt / 2)
                    k4 = velocity(net, xc + dt * k3, t + dt)
                    xc = xc + (dt / 6) * (k1 + k4 + 2 * (k2 + k3))
            parts.append(xc)
        x = torch.cat(parts)
    synchronize(a)
    return time.perf_counter() - t0, x


def augmented(net, x, t):
    """[v(x, t), div v(x, t)], the divergence exact: one autograd.grad per dimension."""
    d = x.shape[1]
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = velocity(net, x, t)
        div = None
        for i in range(d):
            (g,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=i + 1 < d)
            div = g[:, i] if div is None else div + g[:, i]
    return v.detach(), div.detach()


def log_likelihood(net, x, a):
    """log q(x): [x, l] from t = 1 to 0 by RK4, l(1) = 0, then log N(x0; 0, I) + l(0)."""
    n, d = x.shape
    steps = a.lik_steps
    dt = -1.0 / steps
    out = []
    with torch.no_grad():
        for xc in x.split(a.lik_chunk):
            l = torch.zeros(xc.shape[0], device=xc.device)
            for i in range(steps):
                t = 1.0 + i * dt
                v1, g1 = augmented(net, xc, t)
                v2, g2 = augmented(net, xc + (dt / 2) * v1, t + dt / 2)
                v3, g3 = augmented(net, xc + (dt / 2) * v2, t + dt / 2)
                v4, g4 = augmented(net, xc + dt * v3, t + dt)
                xc = xc + (dt / 6) * (v1 + v4 + 2 * (v2 + v3))
                l = l + (dt / 6) * (g1 + g4 + 2 * (g2 + g3))
            out.append(-0.5 * xc.square().sum(1) - 0.5 * d * math.log(2 * math.pi) + l)
    return torch.cat(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("task", choices=["run"])
    p.add_argument("--target", default="gmm3")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--train-steps", type=int, default=10_000)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--euler-steps", type=int, default=100)
    p.add_argument("--rk4-steps", type=int, default=20)
    p.add_argument("--lik-points", type=int, default=10_000)
    p.add_argument("--lik-steps", type=int, default=20)
    p.add_argument("--lik-chunk", type=int, default=1024)
    p.add_argument("--sample-chunk", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adam", choices=["fused", "foreach", "single"], default="fused")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--cuda-graph", action="store_true")
    p.add_argument("--out-samples", default="")
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_pytorch.py: --device cuda: CUDA is not available here")
    if a.cuda_graph and a.device != "cuda":
        raise SystemExit("bench_pytorch.py: --cuda-graph needs --device cuda")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    mix = Mixture(a.target, a.device)
    d = mix.dim
    net = make_net(d, a.width, a.layers).to(a.device)
    rss = {}
    # Warm-up: one step on a throwaway network, so one-time initialisation (torch loading its CUDA
    # libraries at the first backward pass, allocator growth) stays out of the timings; the Rust
    # side does the same. The data stream is then re-seeded.
    t0, c0 = time.perf_counter(), time.process_time()
    warm_args = argparse.Namespace(**{**vars(a), "train_steps": 1, "cuda_graph": False})
    train(make_net(d, a.width, a.layers).to(a.device), mix, warm_args)
    warmup_s, warmup_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    torch.manual_seed(a.seed + 1)
    clears = reset_peak_rss()

    cpu = {"warmup": warmup_cpu_s}
    c0 = time.process_time()
    train_s, final_loss = train(net, mix, a)
    cpu["train"] = time.process_time() - c0
    rss["train"] = peak_rss_kb()

    reset_peak_rss()
    c0 = time.process_time()
    euler_s, x = sample(net, d, a, a.euler_steps, "euler")
    cpu["euler"] = time.process_time() - c0
    rss["euler"] = peak_rss_kb()
    if a.out_samples:
        np.save(a.out_samples, x.cpu().numpy().astype(np.float64))
    del x

    reset_peak_rss()
    c0 = time.process_time()
    rk4_s, _ = sample(net, d, a, a.rk4_steps, "rk4")
    cpu["rk4"] = time.process_time() - c0
    rss["rk4"] = peak_rss_kb()

    points = mix.sample(a.lik_points)
    reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    log_q = log_likelihood(net, points, a)
    synchronize(a)
    lik_s = time.perf_counter() - t0
    cpu["lik"] = time.process_time() - c0
    rss["lik"] = peak_rss_kb()

    rep = {
        "side": "pytorch",
        "version": f"torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "device": a.device + (" (CUDA graph)" if a.cuda_graph else ""),
        "dim": d,
        "train_steps": a.train_steps,
        "train_s": train_s,
        "train_steps_per_s": a.train_steps / train_s,
        "final_loss": final_loss,
        "euler_s": euler_s,
        "euler_samples_steps_per_s": a.samples * a.euler_steps / euler_s,
        "rk4_s": rk4_s,
        "rk4_samples_steps_per_s": a.samples * a.rk4_steps / rk4_s,
        "lik_s": lik_s,
        "lik_points_per_s": a.lik_points / lik_s,
        "lik_mean_log_q": log_q.mean().item(),
        "rss_kb": rss,
        "rss_phases_separate": clears,
        "cpu_s": cpu,
        "warmup_s": warmup_s,
        "peak_rss_kb": max(v for v in rss.values() if v is not None) if any(rss.values()) else None,
    }
    print(json.dumps(rep))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
