"""A gymnasium environment over `MecSimulator`: flat Box observation, MultiDiscrete action (one
choice per MD: 0 = local, then (ES, option) pairs), and the same state as a PyG graph via `graph()`."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.mec.simulator import MecSimulator, Observation
from grl_aecnn.profile import OptionProfile

CLIP = 10.0


def estimated_snr_db10(obs: Observation) -> np.ndarray:
    """Estimated SNR at P_max over the ES's whole band, dB / 10 (N, M)."""
    snr = obs.p_max_w * obs.gain_est / (obs.n0_w_hz * obs.es_bandwidth_hz)
    return 10 * np.log10(np.maximum(snr, 1e-30)) / 10.0


def md_features(obs: Observation) -> np.ndarray:
    return np.stack([obs.has_task.astype(float), obs.deadline_s / 0.1, obs.md_flops / 1e10,
                     obs.energy_budget_j / 0.01], axis=1)


def es_features(obs: Observation) -> np.ndarray:
    return np.stack([obs.avail_est, np.full(obs.n_es, obs.es_capacity_flops / 1e11),
                     np.full(obs.n_es, obs.es_bandwidth_hz / 1e8), np.zeros(obs.n_es)], axis=1)


def flat_observation(obs: Observation) -> np.ndarray:
    v = np.concatenate([md_features(obs).ravel(), estimated_snr_db10(obs).ravel(), es_features(obs)[:, 0]])
    return np.clip(v, -CLIP, CLIP).astype(np.float32)


def node_features(obs: Observation) -> np.ndarray:
    """(N + M, 6) float32: MDs then ESs, 4 features each + 2 type flags."""
    n = obs.n_md
    x = np.zeros((n + obs.n_es, 6), np.float32)
    x[:n, :4], x[:n, 4] = md_features(obs), 1.0
    x[n:, :4], x[n:, 5] = es_features(obs), 1.0
    return x


def pair_features(obs: Observation) -> np.ndarray:
    """(N M, 2) float32 per MD-ES pair, MD-major: [estimated SNR dB/10, distance km]."""
    dist = np.linalg.norm(obs.md_xy[:, None] - obs.es_xy[None], axis=-1).ravel() / 1e3
    return np.stack([estimated_snr_db10(obs).ravel(), dist], axis=1).astype(np.float32)


def observation_graph(obs: Observation):
    """PyG `Data`: nodes 0..N-1 are MDs, N..N+M-1 ESs (`node_features`); MD<->ES edges in both
    directions with edge_attr `pair_features`."""
    from torch_geometric.data import Data

    n, m = obs.n_md, obs.n_es
    src = np.repeat(np.arange(n), m)
    dst = n + np.tile(np.arange(m), n)
    attr = pair_features(obs)
    edge_index = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1)
    return Data(x=torch.from_numpy(node_features(obs)), edge_index=torch.tensor(edge_index, dtype=torch.long),
                edge_attr=torch.from_numpy(np.concatenate([attr, attr])), n_md=n, n_es=m)


class MecEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario, profile: OptionProfile, allocator: str = "optimal"):
        self.scenario, self.profile = scenario, profile
        self.sim = MecSimulator(scenario, profile, seed=0, allocator=allocator)
        n, m = scenario.n_md, scenario.n_es
        dim = 4 * n + n * m + m
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(dim,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete(np.full(n, self.sim.n_actions, dtype=np.int64))
        self._obs: Observation | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs = self.sim.reset(int(self.np_random.integers(2**31 - 1)))
        return flat_observation(self._obs), {"slot": 0}

    def step(self, action):
        out = self.sim.step(np.asarray(action, dtype=np.int64))
        self._obs = self.sim.observe()
        truncated = self.sim.slot >= self.scenario.episode_slots
        info = {"slot": self.sim.slot, "n_tasks": out["n_tasks"], "n_success": out["n_success"]}
        return flat_observation(self._obs), out["reward"], False, truncated, info

    def state(self) -> Observation:
        return self._obs

    def graph(self):
        return observation_graph(self._obs)
