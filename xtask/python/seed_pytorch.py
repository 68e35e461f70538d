"""The seed experiment as an efficient PyTorch eager script: the reference our timings are compared with.

Same network, optimiser, batch and steps as the seed; unlike the seed, the mixture is sampled in
batches on the tensor side and sampling runs under inference mode. Prints one JSON line.
Usage: python seed_pytorch.py [--steps N] [--samples N] [--sample-steps N] [--threads N] [--out samples.npy]
"""
import argparse, json, time
import numpy as np
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=10_000)
p.add_argument("--batch-size", type=int, default=256)
p.add_argument("--samples", type=int, default=10_000)
p.add_argument("--sample-steps", type=int, default=100)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

weights = torch.tensor([0.3, 0.5, 0.2])
means = torch.tensor([[-2.0, -1.0], [1.0, 3.0], [4.0, -2.0]])
covs = torch.tensor([[[0.5, 0.1], [0.1, 0.4]], [[0.6, -0.2], [-0.2, 0.5]], [[0.4, 0.0], [0.0, 0.6]]])
chol = torch.linalg.cholesky(covs)

def sample_mixture(n):
    k = torch.multinomial(weights, n, replacement=True)
    z = torch.randn(n, 2, 1)
    return means[k] + (chol[k] @ z).squeeze(-1)

net = nn.Sequential(nn.Linear(3, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
opt = torch.optim.Adam(net.parameters(), lr=1e-4)
t0 = time.perf_counter()
for _ in range(a.steps):
    t = torch.rand(a.batch_size, 1)
    x0 = torch.randn(a.batch_size, 2)
    x1 = sample_mixture(a.batch_size)
    xt = (1 - t) * x0 + t * x1
    loss = nn.functional.mse_loss(net(torch.cat([xt, t], dim=-1)), x1 - x0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
train_s = time.perf_counter() - t0

t0 = time.perf_counter()
with torch.inference_mode():
    x = torch.randn(a.samples, 2)
    dt = 1.0 / a.sample_steps
    for step in range(a.sample_steps):
        t = torch.full((a.samples, 1), step / a.sample_steps)
        x = x + dt * net(torch.cat([x, t], dim=-1))
sample_s = time.perf_counter() - t0
if a.out:
    np.save(a.out, x.numpy())
print(json.dumps({"train_s": train_s, "train_steps_per_s": a.steps / train_s, "sample_s": sample_s, "threads": torch.get_num_threads(), "final_loss": loss.item()}))
