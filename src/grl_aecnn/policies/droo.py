"""DROO-AECNN: the DROO loop (Huang, Bi, Zhang, "Deep Reinforcement Learning for Online Computation
Offloading in Wireless Powered MEC Networks", IEEE TMC 2020) on the same actions, candidates and
planner as GRL-AECNN (`policies/grl.py`), with DROO's fully connected network on the flattened state.

The network sees `mec.env.flat_observation` (MD features, estimated SNRs, ES availability) and
outputs one categorical distribution per MD over {local} + {(ES, option)}; its input and output
sizes fix N, M and the option count, which is exactly the limitation GRL-AECNN removes.
"""

from __future__ import annotations

import torch
from torch import nn

from grl_aecnn.mec.env import flat_observation
from grl_aecnn.mec.simulator import MecError, Observation
from grl_aecnn.policies.grl import Chain
from grl_aecnn.policies.planner import Plan


class FlatActor(nn.Module):
    """Two hidden ReLU layers (DROO used 120 and 80 units for 10 users: hidden and 2/3 hidden here)."""

    def __init__(self, n_md: int, n_es: int, n_options: int, hidden: int):
        super().__init__()
        self.n_md, self.n_es, self.n_options = n_md, n_es, n_options
        self.n_actions = 1 + n_es * n_options
        self.net = Chain(nn.Linear(4 * n_md + n_md * n_es + n_es, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden * 2 // 3), nn.ReLU(),
                         nn.Linear(hidden * 2 // 3, n_md * self.n_actions))

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B N, 1 + M K) logits, disallowed actions at -1e9."""
        x, mask = batch
        return self.net(x).reshape(-1, self.n_actions).masked_fill(~mask, -1e9)

    def encode(self, obs: Observation, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
        if (obs.n_md, obs.n_es, plan.k) != (self.n_md, self.n_es, self.n_options):
            raise MecError(f"DROO was trained for N={self.n_md}, M={self.n_es}, {self.n_options} options; this slot has "
                           f"N={obs.n_md}, M={obs.n_es}, {plan.k} options (its network fixes them; GRL-AECNN does not)")
        return torch.from_numpy(flat_observation(obs))[None], torch.from_numpy(plan.mask)

    @staticmethod
    def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([i[0] for i in items]), torch.cat([i[1] for i in items])
