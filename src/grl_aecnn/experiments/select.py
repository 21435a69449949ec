"""`grl-aecnn select-policy`: pick one of several training runs of a learned policy (e.g. the same
recipe under different seeds) by its mean task reward on validation layouts, seeds that no reported
experiment uses, over several numbers of MDs (the shipped agent serves every N). RL training outcomes
vary from seed to seed; selecting every agent (GRL-AECNN and its baselines alike) the same way keeps
the comparison fair."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from grl_aecnn.errors import ConfigError
from grl_aecnn.experiments.simulate import simulate_policy
from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.policies.grl import load_agent
from grl_aecnn.profile import OptionProfile

# Far from the evaluation seeds of configs/experiments/ (0-2), so that selection does not see them.
VALIDATION_SEEDS = (1000, 1001)


def card_of(run: str | os.PathLike) -> Path:
    """A training run folder's card.json, or a policy card itself (e.g. a zoo `<name>.json`)."""
    run = Path(run)
    return run if run.suffix == ".json" else run / "card.json"


def select_policy(runs: list[str | os.PathLike], scenario: Scenario, profile: OptionProfile,
                  n_mds: tuple[int, ...], seeds: tuple[int, ...] = VALIDATION_SEEDS, slots: int = 300,
                  progress=lambda done, total: None) -> dict:
    """runs: training run folders or policy cards. Each run's mean task reward per (N, seed) and their mean (`reward`); `best`: the run with the highest."""
    if not runs:
        raise ConfigError("select-policy: no run to select from")
    if set(seeds) & {0, 1, 2}:
        raise ConfigError(f"select-policy: validation seeds {sorted(seeds)} overlap the experiments' seeds 0-2")
    total, done, rows = len(runs) * len(n_mds) * len(seeds), 0, []
    for run in runs:
        agent = load_agent(card_of(run))
        rewards = {}
        for n in n_mds:
            for seed in seeds:
                summary, _ = simulate_policy(scenario.replaced(n_md=n), profile, agent, slots, seed)
                rewards[f"n{n}-seed{seed}"] = summary["avg_reward"]
                done += 1
                progress(done, total)
        rows.append({"run": str(run), "name": agent.name, "seed": agent.cfg.seed,
                     "reward": float(np.mean(list(rewards.values()))), "rewards": rewards})
    best = max(rows, key=lambda row: row["reward"])
    return {"scenario": scenario.name, "n_mds": list(n_mds), "seeds": list(seeds), "slots": slots, "runs": rows,
            "best": best["run"]}
