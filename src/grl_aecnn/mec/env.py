"""Gymnasium environments over the simulator: `MecEnv` (one `MecSimulator`) and `MecVectorEnv` (a
`MecBatch` stepped in lockstep). Flat Box observation, MultiDiscrete action (one choice per MD:
0 = local, then (ES, option) pairs), and the same state as a PyG graph via `MecEnv.graph()`."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.mec.simulator import MecBatch, MecError, MecSimulator, Observation
from grl_aecnn.profile import OptionProfile

CLIP = 10.0


def estimated_snr_db10(obs: Observation) -> np.ndarray:
    """Estimated SNR at P_max over the ES's whole band, dB / 10 (N, M)."""
    snr = obs.p_max_w * obs.gain_est / (obs.n0_w_hz * obs.es_bandwidth_hz)
    return 10 * np.log10(np.maximum(snr, 1e-30)) / 10.0


def md_features(obs: Observation) -> np.ndarray:
    """(..., N, 4); the fields may carry leading env axes (`MecVectorEnv`)."""
    return np.stack([obs.has_task.astype(float), obs.deadline_s / 0.1, obs.md_flops / 1e10,
                     np.broadcast_to(obs.energy_budget_j / 0.01, obs.has_task.shape)], axis=-1)


def es_features(obs: Observation) -> np.ndarray:
    return np.stack([obs.avail_est, np.full(obs.n_es, obs.es_capacity_flops / 1e11),
                     np.full(obs.n_es, obs.es_bandwidth_hz / 1e8), np.zeros(obs.n_es)], axis=1)


def flat_observation(obs: Observation) -> np.ndarray:
    """[MD features, estimated SNR per MD-ES pair, estimated ES availability]; (..., 4N + NM + M) when
    the fields carry leading env axes."""
    lead = obs.has_task.shape[:-1]
    v = np.concatenate([md_features(obs).reshape(*lead, -1), estimated_snr_db10(obs).reshape(*lead, -1),
                        np.asarray(obs.avail_est, float)], axis=-1)
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
        self.observation_space, self.action_space = self.spaces(scenario, self.sim.n_actions)
        self._obs: Observation | None = None

    @staticmethod
    def spaces(scenario: Scenario, n_actions: int) -> tuple[spaces.Box, spaces.MultiDiscrete]:
        n, m = scenario.n_md, scenario.n_es
        return (spaces.Box(-CLIP, CLIP, shape=(4 * n + n * m + m,), dtype=np.float32),
                spaces.MultiDiscrete(np.full(n, n_actions, dtype=np.int64)))

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


class MecVectorEnv(VectorEnv):
    """`num_envs` copies of the scenario in one `MecBatch`, stepped in lockstep (the fast way to many
    environments: a slot of all copies costs about the NumPy calls of one). All copies truncate
    together after `episode_slots`; the next `step` then resets the whole batch with a fresh seed
    (next-step autoreset: its actions are ignored, rewards 0). A batch of one gives `MecEnv`'s
    observations and rewards for the same seed."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, scenario: Scenario, profile: OptionProfile, num_envs: int, allocator: str = "optimal"):
        self.scenario, self.profile, self.num_envs = scenario, profile, int(num_envs)
        self.batch = MecBatch(scenario, profile, seed=0, allocator=allocator, n_envs=self.num_envs)
        one = MecEnv.spaces(scenario, self.batch.n_actions)
        self.single_observation_space, self.single_action_space = one
        self.observation_space = batch_space(one[0], self.num_envs)
        self.action_space = batch_space(one[1], self.num_envs)
        self._autoreset = False

    def _observations(self) -> np.ndarray:
        b, sc = self.batch, self.scenario
        view = SimpleNamespace(has_task=b.has_task, deadline_s=b.deadline_s, md_flops=b.md_flops,
                               energy_budget_j=sc.device.energy_budget_j, gain_est=b.gain_est, avail_est=b.avail_est,
                               p_max_w=sc.device.p_max_w, n0_w_hz=b.n0, es_bandwidth_hz=sc.edge.bandwidth_hz)
        return flat_observation(view)

    def _info(self, **values: np.ndarray) -> dict:
        """Gymnasium's vector info: per key an array over envs and its "_key" mask (all envs report)."""
        values = {"slot": np.full(self.num_envs, self.batch.slot), **values}
        return {**values, **{f"_{k}": np.ones(self.num_envs, bool) for k in values}}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options and "reset_mask" in options:
            raise MecError("MecVectorEnv steps its envs in lockstep: they reset together, not by reset_mask")
        super().reset(seed=seed)
        self.batch.reset(int(self.np_random.integers(2**31 - 1)))
        self._autoreset = False
        return self._observations(), self._info()

    def step(self, actions):
        n = self.num_envs
        if self._autoreset:
            obs, info = self.reset()
            return obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), info
        out = self.batch.step(np.asarray(actions))  # integer actions only (the batch checks)
        self._autoreset = self.batch.slot >= self.scenario.episode_slots
        info = self._info(n_tasks=out["n_tasks"], n_success=out["n_success"])
        return self._observations(), out["reward"], np.zeros(n, bool), np.full(n, self._autoreset), info
