"""Experiments: one factor of the scenario swept, every listed policy run on the same seeds and slots.

A job is (factor value, policy, seed): one simulation, deterministic given those and the profile, so
jobs run in any order on any worker (local processes or a Ray cluster) and give the same numbers.
Each finished job is written to `<output>/jobs/` at once; a rerun skips the jobs already there, so
an interrupted sweep resumes without redoing finished work. A job's key holds everything its
numbers depend on: the scenario, the profile's content, the policy's weights and card config, the
seed, slots and allocator, and the source code of the simulation stack (`code_id`). The result folder
also holds the resolved config and scenario, a CSV table, the summary JSON, plots and the run's metadata.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt, ValidationError, model_validator

import grl_aecnn
from grl_aecnn.config import StrictModel, dump_config, load_config
from grl_aecnn.errors import ConfigError
from grl_aecnn.experiments.plots import pyplot, save_figure
from grl_aecnn.experiments.simulate import simulate_policy
from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.policies.registry import DESCRIPTIONS, default_profile, weights_id
from grl_aecnn.store import atomic_write_bytes, atomic_write_json, read_json

METRICS = ("avg_accuracy", "reliability", "throughput_per_s", "reward", "decision_ms_median")
PLOTTED = {"avg_accuracy": "average accuracy", "reliability": "service reliability (on-time fraction)",
           "throughput_per_s": "throughput (tasks on time per s)"}


class ExperimentConfig(StrictModel):
    """A sweep of one scenario factor. Paths are relative to the working directory."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    scenario: str = Field("configs/scenarios/default.yaml", description="base scenario YAML")
    factor: str | None = Field(None, description="dotted Scenario field, e.g. n_md or channel.csi_error_var; "
                                                 "None: the base scenario only")
    values: tuple[int | float, ...] = Field((), description="values of the factor")
    policies: tuple[str, ...] = ("grl", "droo", "greedy", "full-offload", "local", "random")
    slots: PositiveInt = Field(2000, description="evaluation slots per (value, policy, seed)")
    seeds: tuple[int, ...] = (0, 1, 2)
    profile: str | None = Field(None, description="option profile JSON; None: the shipped real profile")
    allocator: Literal["optimal", "equal"] = "optimal"
    output_dir: str | None = Field(None, description="default: results/experiments/<name>")

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if unknown := sorted(set(self.policies) - set(DESCRIPTIONS)):
            raise ValueError(f"unknown policies {unknown}; known: {sorted(DESCRIPTIONS)}")
        if (self.factor is None) != (not self.values):
            raise ValueError("give a factor together with its values, or neither")
        if not self.seeds or not self.policies:
            raise ValueError("need at least one seed and one policy")
        for name, items in (("seeds", self.seeds), ("policies", self.policies), ("values", self.values)):
            if len(set(items)) != len(items):
                raise ValueError(f"{name} {list(items)} repeat an entry (each would be counted twice)")
        return self

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"results/experiments/{self.name}")


def with_factor(base: Scenario, factor: str | None, value: float | None) -> Scenario:
    """The base scenario with one (dotted) field set, validated again."""
    if factor is None:
        return base
    data = base.model_dump(mode="json")
    node = data
    *parents, leaf = factor.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"factor {factor!r}: the scenario has no section {key!r}")
        node = node[key]
    if leaf not in node:
        raise ConfigError(f"factor {factor!r}: the scenario has no field {leaf!r}")
    node[leaf] = int(value) if isinstance(node[leaf], int) and float(value).is_integer() else value
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"factor {factor!r} = {value!r} makes an invalid scenario: {exc}") from exc


# ---- jobs ---------------------------------------------------------------------------------------
_PROFILES: dict[tuple[str | None, str], object] = {}
# The packages whose code decides a job's numbers (experiments/simulate.py runs the job).
_SIMULATION_CODE = ("mec", "policies", "profile", "experiments/simulate.py")


def run_job(job: dict) -> dict:
    """One simulation; runs in a worker process or a Ray task, so it takes and returns plain data."""
    import torch

    torch.set_num_threads(1)  # one job per core; the policies' networks are small
    cached = (job["profile"], job["profile_id"])
    if cached not in _PROFILES:
        profile, _ = default_profile(job["profile"])
        if job["profile_id"] and profile_id(profile) != job["profile_id"]:
            raise ConfigError(f"profile {job['profile'] or '(shipped)'} changed after the jobs were planned")
        _PROFILES[cached] = profile
    profile = _PROFILES[cached]
    scenario = Scenario.model_validate(job["scenario"])
    summary, _ = simulate_policy(scenario, profile, job["policy"], job["slots"], job["seed"], job["allocator"])
    return {**{k: job[k] for k in ("index", "value", "policy", "seed", "slots")}, **summary,
            "reward": summary["avg_reward"], "key": job_key(job)}


def _job_file(out: Path, job: dict) -> Path:
    return out / "jobs" / f"{job['index']:03d}-{job['policy']}-seed{job['seed']}.json"


def job_key(job: dict) -> str:
    """Identity of a job's inputs: a finished job is reused only if nothing it depends on changed."""
    return hashlib.sha256(json.dumps({k: v for k, v in job.items() if k != "index"}, sort_keys=True).encode()).hexdigest()


def profile_id(profile) -> str:
    """Content hash of a profile's options (names, kinds, FLOPs) and arrays: finished jobs are stale
    once the profile changes."""
    digest = hashlib.sha256(json.dumps([o.to_json() for o in profile.options], sort_keys=True).encode())
    for array in (profile.payload, profile.correct, profile.snr_grid_db, profile.snr_correct):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_id() -> str:
    """Hash of the simulation stack's source files, so that a code change reruns the jobs instead of
    republishing numbers the current code would not give (comments count too: safe, not minimal)."""
    root = Path(grl_aecnn.__file__).parent
    digest = hashlib.sha256()
    for part in _SIMULATION_CODE:
        files = [root / part] if part.endswith(".py") else sorted((root / part).rglob("*.py"))
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def plan_jobs(cfg: ExperimentConfig, profile_hash: str = "") -> tuple[Scenario, list[dict]]:
    base = load_config(cfg.scenario, Scenario)
    values = cfg.values or (None,)
    jobs = []
    for index, value in enumerate(values):
        scenario = with_factor(base, cfg.factor, value).model_dump(mode="json")
        for policy in cfg.policies:
            for seed in cfg.seeds:
                jobs.append({"index": index, "value": value, "policy": policy, "seed": seed, "slots": cfg.slots,
                             "scenario": scenario, "profile": cfg.profile, "profile_id": profile_hash,
                             "weights_id": weights_id(policy, scenario["n_md"], scenario["n_es"]),
                             "allocator": cfg.allocator, "code_id": code_id()})
    return base, jobs


def run_jobs(jobs: list[dict], backend: str, workers: int, address: str | None,
             on_done: Callable[[dict], None]) -> None:
    """Run every job, calling `on_done` with each result as it arrives."""
    if not jobs:
        return
    if backend == "ray":
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--backend ray needs Ray: python -m pip install -e '.[ray]'") from exc

        started = not ray.is_initialized()
        if started:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": {"GRL_AECNN_DATA": os.environ.get("GRL_AECNN_DATA", "")}})
        try:
            remote = ray.remote(num_cpus=1)(run_job)
            pending = [remote.remote(job) for job in jobs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                on_done(ray.get(done[0]))
        finally:
            if started:
                ray.shutdown()
    elif backend == "local":
        if workers == 1:
            for job in jobs:
                on_done(run_job(job))
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: workers must not inherit torch's thread pools from a forked parent.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_job, job) for job in jobs]):
                on_done(future.result())
    else:
        raise ConfigError(f"backend must be 'local' or 'ray', got {backend!r}")


# ---- results ------------------------------------------------------------------------------------
def summarize(cfg: ExperimentConfig, results: list[dict]) -> dict:
    """Mean over seeds of each metric (decision time: median over seeds), per value and policy."""
    values = cfg.values or (None,)
    points = []
    for index, value in enumerate(values):
        policies = {}
        for policy in cfg.policies:
            rows = [r for r in results if r["index"] == index and r["policy"] == policy]
            if not rows:
                continue
            entry = {m: float(np.mean([r[m] for r in rows])) for m in METRICS if m != "decision_ms_median"}
            entry["decision_ms_median"] = float(np.median([r["decision_ms_median"] for r in rows]))
            entry.update({f"{m}_std": float(np.std([r[m] for r in rows])) for m in PLOTTED})
            entry["seeds"] = len(rows)
            policies[policy] = entry
        points.append({"value": value, "policies": policies})
    return {"experiment": cfg.name, "factor": cfg.factor, "slots": cfg.slots, "seeds": list(cfg.seeds),
            "points": points}


def table_csv(summary: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["value", "policy", *METRICS])
    for point in summary["points"]:
        for policy, entry in point["policies"].items():
            writer.writerow([point["value"], policy, *(f"{entry[m]:.6g}" for m in METRICS)])
    return buf.getvalue()


def plot_metrics(summary: dict, out: Path) -> list[Path]:
    plt = pyplot()
    paths = []
    policies = list(dict.fromkeys(p for point in summary["points"] for p in point["policies"]))
    for metric, label in PLOTTED.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        if summary["factor"] is None:
            entries = summary["points"][0]["policies"]
            ax.bar(policies, [entries[p][metric] for p in policies],
                   yerr=[entries[p][f"{metric}_std"] for p in policies], capsize=3)
            ax.tick_params(axis="x", rotation=30)
        else:
            for policy in policies:
                pts = [(pt["value"], pt["policies"][policy]) for pt in summary["points"] if policy in pt["policies"]]
                ax.errorbar([v for v, _ in pts], [e[metric] for _, e in pts], yerr=[e[f"{metric}_std"] for _, e in pts],
                            marker="o", capsize=3, label=policy)
            ax.set_xlabel(summary["factor"])
            ax.legend(fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(f"{summary['experiment']}: {label}", fontsize=10)
        ax.grid(True, alpha=0.3)
        paths.append(save_figure(fig, out / f"{metric}.png"))
    return paths


def plot_convergence(out: Path) -> Path | None:
    """Training curves (mean slot reward per episode) of the shipped learned policies."""
    from grl_aecnn.zoo import zoo_file

    curves = {}
    for policy in ("grl", "grl-bottlenetpp", "grl-deepjscc", "droo"):
        card = zoo_file(f"{policy}-default.json")
        if card.exists() and (rewards := read_json(card).get("episode_rewards")):
            curves[policy] = rewards
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for policy, rewards in curves.items():
        ax.plot(np.arange(1, len(rewards) + 1), rewards, label=policy, alpha=0.8)
    ax.set_xlabel("training episode")
    ax.set_ylabel("mean slot reward")
    ax.set_title("training convergence of the shipped policies", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save_figure(fig, out / "convergence.png")


def run_experiment(cfg: ExperimentConfig, backend: str = "local", workers: int | None = None,
                   address: str | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Run (or resume) an experiment and write its result folder; returns the summary."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"backend must be 'local' or 'ray', got {backend!r}")
    out = cfg.out
    profile, source = default_profile(cfg.profile)
    base, jobs = plan_jobs(cfg, profile_id(profile))
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    results, todo = [], []
    for job in jobs:
        path = _job_file(out, job)
        done = read_json(path) if path.exists() else None
        if done is not None and done.get("key") == job_key(job):
            results.append(done)
        else:
            todo.append(job)
    total = len(jobs)
    if progress:
        progress(len(results), total)

    def finished(result: dict) -> None:
        atomic_write_json(_job_file(out, result), result)
        results.append(result)
        if progress:
            progress(len(results), total)

    run_jobs(todo, backend, workers or min(len(todo), os.cpu_count() or 1) or 1, address, finished)
    summary = summarize(cfg, results)
    summary["profile"] = {"source": source, "model": profile.model, "synthetic": profile.synthetic,
                          "dataset_checksum": profile.dataset_checksum}
    # Written together at the end, so a failed run never leaves a new config beside an old summary.
    atomic_write_bytes(out / "config.yaml", dump_config(cfg).encode())
    atomic_write_bytes(out / "scenario.yaml", dump_config(base).encode())
    atomic_write_json(out / "summary.json", summary)
    atomic_write_bytes(out / "table.csv", table_csv(summary).encode())
    atomic_write_json(out / "metadata.json", {
        "package_version": grl_aecnn.__version__, "seeds": list(cfg.seeds), "backend": backend,
        "profile": summary["profile"], "profile_provenance": profile.provenance, "code_id": code_id(),
        "weights": {p: sorted({j["weights_id"] for j in jobs if j["policy"] == p}) for p in cfg.policies
                    if any(j["weights_id"] for j in jobs if j["policy"] == p)}, "jobs": total,
        "jobs_resumed": total - len(todo)})
    plot_metrics(summary, out)
    plot_convergence(out)
    return summary
