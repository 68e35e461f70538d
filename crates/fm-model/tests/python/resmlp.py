"""fm's residual MLP (`[model] kind = "resmlp"`, `--model resmlp`) as a PyTorch module.

A checkpoint fm writes for it loads here with `load_state_dict` (strict: the same names and
shapes), and a state dict saved from this module loads into fm with the sizes given
(`fm_model::checkpoint::LoadOptions::config`). The layers, as fm_model::ResMlp builds them:

    h = input([x, sin(w t), cos(w t), c])            w: time_features/2 frequencies, 1 to 100
    h = h + fc2(act(fc1(LayerNorm(h))))              for each of `blocks` blocks
    v = output(LayerNorm(h))

For an average velocity (MeanFlow, `time_inputs = 2`) `t` is `[r, t]` and each is embedded in
turn; a conditional network takes its condition features `c` (fm's one-hot classes, values and
"no condition" flag, see ConditionalNet in crossover.py) after the times.
"""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, hidden, act):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h):
        return self.fc2(self.act(self.fc1(self.norm(h))))


class ResMLP(nn.Module):
    def __init__(self, dim=2, hidden=128, blocks=3, time_features=32, time_inputs=1, cond_features=0, act=nn.ReLU):
        super().__init__()
        half = time_features // 2
        freqs = [1.0] if half == 1 else [100.0 ** (i / (half - 1)) for i in range(half)]
        self.register_buffer("freqs", torch.tensor(freqs).unsqueeze(0), persistent=False)
        self.time_inputs = time_inputs
        self.input = nn.Linear(dim + time_inputs * time_features + cond_features, hidden)
        self.blocks = nn.ModuleList(Block(hidden, act) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, dim)

    def forward(self, x, t, c=None):
        features = [x]
        for j in range(self.time_inputs):
            angle = t[:, j : j + 1] * self.freqs
            features += [angle.sin(), angle.cos()]
        if c is not None:
            features.append(c)
        h = self.input(torch.cat(features, dim=1))
        for block in self.blocks:
            h = h + block(h)
        return self.output(self.norm(h))
