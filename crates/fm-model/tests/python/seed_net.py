"""The seed post's network, verbatim (FlowMatchNet of the Chinese blog post in shared/seed)."""

import torch
import torch.nn as nn


class FlowMatchNet(nn.Module):
    def __init__(self, input_dim=2, hidden_dim=128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim + 1, hidden_dim),  # input: x (2-D) + t (1-D)
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, input_dim),  # output: the vector field (2-D)
        )

    def forward(self, x, t):
        x_t = torch.cat([x, t], dim=-1)
        return self.net(x_t)


def sample_euler(net, x, num_steps=100):
    """The seed's sample_flow_match, from given starting points instead of fresh noise."""
    net.eval()
    n = x.shape[0]
    dt = 1.0 / num_steps
    with torch.no_grad():
        for step in range(num_steps):
            t = torch.ones(n, 1) * (step / num_steps)
            v = net(x, t)
            x = x + dt * v
    return x
