"""PyTorch's side of fm-model's cross-over tests (tests/pytorch.rs), in one interpreter run.

usage: crossover.py WORKDIR

Reads from WORKDIR what the Rust side wrote:
  ours.safetensors   a checkpoint written by fm_model::checkpoint::save (the seed's architecture)
  ours.pth           the same model written by fm_model::checkpoint::export_pth
  ours_te.pth        a GELU network with 16 time features, written by export_pth
  ours_res.safetensors, ours_res.pth   a residual MLP (GELU, 2 blocks of 64, 16 time features)
  inputs.safetensors x [n, 2], t [n, 1] (a batch to evaluate) and x0 [m, 2] (Euler starting points)
Writes to WORKDIR:
  seed.pth           a seed FlowMatchNet, briefly trained, saved as the seed does: torch.save(net.state_dict(), p)
  seed.safetensors   the same weights with safetensors.torch.save_file
  seed_cuda.pth      seed.pth with its storages' location rewritten to 'cuda:0' (a GPU-saved file)
  seed_deflated.pth  seed.pth re-zipped with compression (which torch never writes)
  seed_legacy.pth    seed.pth in the legacy, pre-zip torch.save format
  seed_proto4.pth    seed.pth with pickle protocol 4 (frames, STACK_GLOBAL, MEMOIZE)
  seed_dp.pth, seed_compiled.pth, seed_bare.pth   seed.pth's weights as DataParallel (module.),
                     torch.compile (_orig_mod.) and a bare nn.Sequential name them
  silu.pth           the seed's layout with SiLU units (TorchCFM-style), briefly trained
  ours_te_resaved.pth ours_te.pth after torch.load and torch.save
  res_torch.pth      a residual MLP initialised by PyTorch, saved as torch.save(net.state_dict())
  outputs.safetensors velocities and Euler samples computed here
  report.json        {section: "ok" or the error}, so each Rust test reports its own part
"""

import json
import os
import sys
import traceback
import zipfile
from collections import OrderedDict

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed_net import FlowMatchNet, sample_euler  # noqa: E402
from resmlp import ResMLP  # noqa: E402

torch.set_num_threads(1)
work = sys.argv[1]
path = lambda name: os.path.join(work, name)  # noqa: E731
inputs = load_file(path("inputs.safetensors"))
x, t, x0, rt = inputs["x"], inputs["t"], inputs["x0"], inputs["rt"]
outputs, report = {}, {}


def section(name):
    def run(f):
        try:
            f()
            report[name] = "ok"
        except Exception:
            report[name] = traceback.format_exc()
    return run


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_state_dict(sd, net):
    expected = net.state_dict()
    check(set(sd) == set(expected), f"names {sorted(sd)} != {sorted(expected)}")
    for k, v in sd.items():
        check(v.dtype == torch.float32, f"{k} has dtype {v.dtype}")
        check(v.is_contiguous(), f"{k} is not contiguous")
        check(v.shape == expected[k].shape, f"{k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")


@section("safetensors_into_torch")
def _():
    sd = load_file(path("ours.safetensors"))
    net = FlowMatchNet(input_dim=2, hidden_dim=128)
    check_state_dict(sd, net)
    net.load_state_dict(sd)  # strict: no renaming, nothing missing or left over
    with torch.no_grad():
        outputs["v_ours"] = net(x, t)
    outputs["euler_ours"] = sample_euler(net, x0.clone())


@section("pth_into_torch")
def _():
    sd = torch.load(path("ours.pth"), weights_only=True)
    check(type(sd) is OrderedDict, f"torch.load gave a {type(sd)}")
    net = FlowMatchNet(input_dim=2, hidden_dim=128)
    check(list(sd) == list(net.state_dict()), f"order {list(sd)} != {list(net.state_dict())}")
    check_state_dict(sd, net)
    st = load_file(path("ours.safetensors"))
    for k in sd:
        check(torch.equal(sd[k], st[k]), f"{k} differs between ours.pth and ours.safetensors")
    net.load_state_dict(sd)
    with torch.no_grad():
        outputs["v_ours_pth"] = net(x, t)


def gmm_sample(n, g):
    """The seed's 3-component target, drawn on the tensor side."""
    weights = torch.tensor([0.3, 0.5, 0.2])
    means = torch.tensor([[-2.0, -1.0], [1.0, 3.0], [4.0, -2.0]])
    covs = torch.tensor([[[0.5, 0.1], [0.1, 0.4]], [[0.6, -0.2], [-0.2, 0.5]], [[0.4, 0.0], [0.0, 0.6]]])
    k = torch.multinomial(weights, n, replacement=True, generator=g)
    z = torch.randn(n, 2, generator=g)
    return means[k] + torch.einsum("nij,nj->ni", torch.linalg.cholesky(covs)[k], z)


@section("seed_pth")
def _():
    # The seed's network and training, shortened (300 Adam steps at lr 1e-3 instead of 10,000
    # at 1e-4), so the field really carries points from the noise towards the mixture.
    torch.manual_seed(20260125)
    g = torch.Generator().manual_seed(7)
    net = FlowMatchNet(input_dim=2, hidden_dim=128)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(300):
        tt = torch.rand(256, 1, generator=g)
        a, b = torch.randn(256, 2, generator=g), gmm_sample(256, g)
        loss = torch.nn.functional.mse_loss(net((1 - tt) * a + tt * b, tt), b - a)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), path("seed.pth"))
    save_file(net.state_dict(), path("seed.safetensors"))
    with torch.no_grad():
        outputs["v_seed"] = net(x, t)
    outputs["euler_seed"] = sample_euler(net, x0.clone())

    # Variants of the same file: saved from a GPU, re-zipped with compression, legacy format.
    with zipfile.ZipFile(path("seed.pth")) as z:
        records = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    for name, method in [("seed_cuda.pth", zipfile.ZIP_STORED), ("seed_deflated.pth", zipfile.ZIP_DEFLATED)]:
        with zipfile.ZipFile(path(name), "w", compression=method) as z:
            for rec, data in records:
                if name == "seed_cuda.pth" and rec.endswith("/data.pkl"):
                    check(cpu in data, "no 'cpu' location in the seed's pickle")
                    data = data.replace(cpu, cuda)
                z.writestr(rec, data)
    torch.save(net.state_dict(), path("seed_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(net.state_dict(), path("seed_proto4.pth"), pickle_protocol=4)


@section("foreign_layouts")
def _():
    # The seed net's weights as other PyTorch wrappers name them: the real wrappers, not renaming.
    torch.manual_seed(3)
    net = FlowMatchNet(input_dim=2, hidden_dim=128)
    net.load_state_dict(torch.load(path("seed.pth"), weights_only=True))
    torch.save(torch.nn.DataParallel(net).state_dict(), path("seed_dp.pth"))
    sd = net.state_dict()
    compiled = {"_orig_mod." + k: v for k, v in sd.items()}  # what torch.compile(net).state_dict() names them
    torch.save(compiled, path("seed_compiled.pth"))
    torch.save(net.net.state_dict(), path("seed_bare.pth"))
    # The seed's layout with SiLU units: the activation is nowhere in the file.
    silu = FlowMatchNet(input_dim=2, hidden_dim=128)
    for i in (1, 3, 5):
        silu.net[i] = torch.nn.SiLU()
    torch.save(silu.state_dict(), path("silu.pth"))
    with torch.no_grad():
        outputs["v_silu"] = silu(x, t)
    # Our export, through PyTorch's load and save: our metadata stays in the dict's _metadata.
    ours_te = torch.load(path("ours_te.pth"), weights_only=True)
    check("fm_metadata" in ours_te._metadata[""], f"no fm_metadata in {ours_te._metadata}")
    torch.save(ours_te, path("ours_te_resaved.pth"))


def sequential(inputs, dim, hidden, layers, act):
    """The seed's nn.Sequential: `layers` hidden Linear + activation pairs, then a Linear to dim."""
    mods, width = [], inputs
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), act()]
        width = hidden
    mods.append(torch.nn.Linear(hidden, dim))
    return torch.nn.Sequential(*mods)


class MeanFlowNet(torch.nn.Module):
    """An average velocity u(x, r, t) as fm exports it (docs/few-step.md): the seed's Sequential
    on [x, r, t]."""

    def __init__(self, dim=2, hidden=128, layers=3, act=torch.nn.GELU):
        super().__init__()
        self.net = sequential(dim + 2, dim, hidden, layers, act)

    def forward(self, x, r, t):
        return self.net(torch.cat([x, r, t], dim=1))


@section("meanflow_into_torch")
def _():
    sd = torch.load(path("ours_mf.pth"), weights_only=True)
    net = MeanFlowNet()
    net.load_state_dict(sd)
    with torch.no_grad():
        outputs["u_ours_mf"] = net(x, rt[:, :1], rt[:, 1:])
        # One jump from t = 0 to 1: x0 + u(x0, 0, 1).
        zeros, ones = torch.zeros(len(x0), 1), torch.ones(len(x0), 1)
        outputs["jump_ours_mf"] = x0 + net(x0, zeros, ones)
    torch.save(sd, path("ours_mf_resaved.pth"))


class ConditionalNet(torch.nn.Module):
    """A class-conditional velocity v(x, t | c) as fm exports it (docs/conditional.md): the seed's
    Sequential on [x, t, one_hot(c), null], where c = -1 means "no condition" (one_hot all 0,
    null 1). The first layer's one-hot columns are the learned class embedding."""

    def __init__(self, dim=2, classes=3, hidden=128, layers=3, act=torch.nn.GELU):
        super().__init__()
        self.classes = classes
        self.net = sequential(dim + 1 + classes + 1, dim, hidden, layers, act)

    def forward(self, x, t, c):
        given = (c >= 0).unsqueeze(1).to(x.dtype)
        one_hot = torch.nn.functional.one_hot(c.clamp(min=0), self.classes).to(x.dtype) * given
        return self.net(torch.cat([x, t, one_hot, 1 - given], dim=1))


@section("conditional_into_torch")
def _():
    sd = torch.load(path("ours_cond.pth"), weights_only=True)
    net = ConditionalNet()
    net.load_state_dict(sd)
    with torch.no_grad():
        outputs["v_ours_cond"] = net(x, t, inputs["lab"].long())
    torch.save(sd, path("ours_cond_resaved.pth"))


@section("resmlp_into_torch")
def _():
    net = ResMLP(dim=2, hidden=64, blocks=2, time_features=16, act=torch.nn.GELU)
    sd = load_file(path("ours_res.safetensors"))
    check_state_dict(sd, net)
    net.load_state_dict(sd)
    pth = torch.load(path("ours_res.pth"), weights_only=True)
    for k in sd:
        check(torch.equal(sd[k], pth[k]), f"{k} differs between ours_res.pth and ours_res.safetensors")
    with torch.no_grad():
        outputs["v_ours_res"] = net(x, t)
    torch.manual_seed(11)
    theirs = ResMLP(dim=2, hidden=64, blocks=2, time_features=16, act=torch.nn.GELU)
    torch.save(theirs.state_dict(), path("res_torch.pth"))
    with torch.no_grad():
        outputs["v_res_torch"] = theirs(x, t)


save_file({k: v.contiguous() for k, v in outputs.items()}, path("outputs.safetensors"))
with open(path("report.json"), "w") as f:
    json.dump(report, f, indent=1)
