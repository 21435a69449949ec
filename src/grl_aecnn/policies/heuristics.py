"""Baseline policies: local-only, uniformly random, greedy (each MD alone) and full offloading with
the best input codec."""

from __future__ import annotations

import numpy as np

from grl_aecnn.mec.simulator import Observation
from grl_aecnn.policies.planner import Plan, allowed_options

INPUT_CODECS = ("raw", "png", "jpeg")  # option-name prefixes of input offloading (the image itself)


class LocalPolicy:
    name = "local"

    def reset(self, seed: int) -> None:
        pass

    def act(self, observation: Observation) -> np.ndarray:
        return np.zeros(observation.n_md, dtype=np.int64)


class RandomPolicy:
    name = "random"

    def __init__(self, seed: int = 0):
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observation: Observation) -> np.ndarray:
        return self.rng.integers(observation.n_actions, size=observation.n_md).astype(np.int64)


class GreedyPolicy:
    """Each MD picks the action with the highest expected reward on the estimates as if it were the
    only user (whole ES band and estimated compute, power rule of the allocator, mean payloads):
    expected accuracy if predicted on time and within budget, else -psi (`Plan.standalone`). Ties go
    to the lower index. `options` restricts the offloading options by name prefix; without `local`
    every MD offloads."""

    name = "greedy"

    def __init__(self, options: tuple[str, ...] | None = None, local: bool = True):
        self.options, self.local = options, local

    def reset(self, seed: int) -> None:
        pass

    def act(self, obs: Observation) -> np.ndarray:
        plan = Plan(obs, allowed_options(obs, self.options))
        value = plan.standalone.copy()
        if not self.local:
            value[:, 0] = -np.inf
        return plan.sim_action[np.argmax(value, axis=1)]


class FullOffloadPolicy(GreedyPolicy):
    """Full offloading: every MD sends its input image with the input codec (raw, PNG, JPEG levels)
    and ES that look best for it alone."""

    name = "full-offload"

    def __init__(self):
        super().__init__(options=INPUT_CODECS, local=False)
