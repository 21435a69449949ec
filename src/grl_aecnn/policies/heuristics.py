"""Baseline policies: local-only, uniformly random, and greedy (each MD alone)."""

from __future__ import annotations

import numpy as np

from grl_aecnn.mec.allocation import EsResources, EsTasks, evaluate, power_rule, dof_needed
from grl_aecnn.mec.simulator import MecError, Observation, snr_accuracy_lookup


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
    expected accuracy if predicted on time and within budget, else -psi. Ties go to the lower index."""

    name = "greedy"

    def reset(self, seed: int) -> None:
        pass

    def act(self, obs: Observation) -> np.ndarray:
        n, m, offl = obs.n_md, obs.n_es, obs.offload_options
        k = len(offl)
        value = np.full((n, 1 + m * k), -np.inf)
        e_dev = obs.option_device_flops[None, :] * obs.md_j_per_flop[:, None]  # (N, O)
        t_dev = obs.option_device_flops[None, :] / obs.md_flops[:, None]
        loc = obs.local_option
        ok_local = (t_dev[:, loc] <= obs.deadline_s) & (e_dev[:, loc] <= obs.energy_budget_j)
        value[:, 0] = np.where(ok_local, obs.option_accuracy[loc], -obs.failure_penalty)
        for e in range(m):
            res = EsResources(obs.es_bandwidth_hz, obs.es_capacity_flops * obs.avail_est[e], obs.p_max_w, obs.n0_w_hz)
            for j, o in enumerate(offl):
                sym = obs.option_kind[o] == "symbols"
                bits = obs.option_payload_mean[o] * (1.0 if sym else 8.0)
                t = EsTasks(np.full(n, sym), np.full(n, bits), np.full(n, obs.option_server_flops[o]),
                            obs.deadline_s - t_dev[:, o], obs.energy_budget_j - e_dev[:, o], obs.gain_est[:, e],
                            np.ones(n))
                beta = np.ones(n)
                power = power_rule(beta, dof_needed(t, res), t, res)
                ok, *_ = evaluate(beta, np.ones(n), power, t, res)
                acc = np.full(n, obs.option_accuracy[o])
                if sym:
                    snr_db = 10 * np.log10(np.maximum(power * obs.gain_est[:, e] / (obs.n0_w_hz * obs.es_bandwidth_hz), 1e-30))
                    acc = snr_accuracy_lookup(snr_db, obs.snr_grid_db, obs.snr_accuracy[obs.symbols_row[int(o)]])
                value[:, 1 + e * k + j] = np.where(ok, acc, -obs.failure_penalty)
        return np.argmax(value, axis=1).astype(np.int64)


POLICIES = {"local": LocalPolicy, "random": RandomPolicy, "greedy": GreedyPolicy}


def make_policy(name: str, seed: int = 0):
    if name not in POLICIES:
        raise MecError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}")
    policy = POLICIES[name]()
    policy.reset(seed)
    return policy
