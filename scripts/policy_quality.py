"""Mean slot reward of policies on the same realisations (common random numbers), e.g. GRL-AECNN vs
exhaustive search with the same (estimated) information on small instances (docs/policies.md):

    python scripts/policy_quality.py --n-md 5 --n-es 2 --options aecnn:L2 aecnn:L4 aecnn:L6 \
        --episodes 10 --slots 100 --json bench/results/policy-quality.json

Each episode is a new layout (seed = first seed + episode). `--options` restricts the GRL agent,
exhaustive search and the oracle to these option-name prefixes ("a few levels").
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from grl_aecnn.config import load_config
from grl_aecnn.mec import MecSimulator, Scenario
from grl_aecnn.policies import make_policy
from grl_aecnn.policies.grl import load_agent
from grl_aecnn.policies.registry import default_profile
from grl_aecnn.zoo import zoo_file
from grl_aecnn.policies.search import ExhaustiveSearch, PerfectInformationOracle
from grl_aecnn.store import atomic_write_json


def build(name: str, options: tuple[str, ...] | None, card: str):
    if name in ("grl", "droo"):
        return load_agent(card if name == "grl" else zoo_file("droo-default.json"), options=options, name=name)
    if name == "exhaustive":
        return ExhaustiveSearch(options=options)
    if name == "oracle":
        return PerfectInformationOracle(options=options)
    return make_policy(name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="configs/scenarios/default.yaml")
    ap.add_argument("--n-md", type=int, default=5)
    ap.add_argument("--n-es", type=int, default=2)
    ap.add_argument("--options", nargs="*", default=["aecnn:L2", "aecnn:L4", "aecnn:L6"])
    ap.add_argument("--policies", nargs="+", default=["grl", "exhaustive", "oracle", "greedy", "local"])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--slots", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--card", default=str(zoo_file("grl-default.json")), help="GRL policy card")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    scenario = load_config(args.scenario, Scenario).model_copy(update={"n_md": args.n_md, "n_es": args.n_es})
    profile, source = default_profile(args.profile)
    options = tuple(args.options) if args.options else None
    rows = {}
    for name in args.policies:
        pol = build(name, options, args.card)
        rewards, t0 = [], time.perf_counter()
        for ep in range(args.episodes):
            sim = MecSimulator(scenario, profile, seed=args.seed + ep)
            pol.reset(args.seed + ep)
            perfect = getattr(pol, "perfect_information", False)
            for _ in range(args.slots):
                rewards.append(sim.step(pol.act(sim.observe(perfect=perfect)))["reward"])
        rows[name] = {"mean_slot_reward": float(np.mean(rewards)), "sem": float(np.std(rewards) / np.sqrt(len(rewards))),
                      "slots": len(rewards), "seconds": time.perf_counter() - t0}
        print(f"{name:12s} mean slot reward {rows[name]['mean_slot_reward']:+.4f} (+-{rows[name]['sem']:.4f}) "
              f"over {len(rewards)} slots, {rows[name]['seconds']:.0f} s")
    out = {"scenario": scenario.name, "n_md": args.n_md, "n_es": args.n_es, "options": args.options,
           "profile": source, "profile_synthetic": profile.synthetic, "episodes": args.episodes,
           "slots_per_episode": args.slots, "first_seed": args.seed, "python": platform.python_version(), "policies": rows}
    if "grl" in rows and "exhaustive" in rows:
        out["grl_over_exhaustive"] = rows["grl"]["mean_slot_reward"] / rows["exhaustive"]["mean_slot_reward"]
        print(f"GRL-AECNN / exhaustive = {out['grl_over_exhaustive']:.4f}")
    if args.json:
        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
