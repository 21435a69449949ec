"""Experiments: sweeps over a scenario factor, resumable, identical on local processes and on Ray."""

import dataclasses
import json

import pytest

from grl_aecnn.errors import ConfigError
from grl_aecnn.experiments.evaluate import ExperimentConfig, run_experiment, with_factor
from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.profile import save_profile, synthetic_profile


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    return str(save_profile(synthetic_profile(seed=0, n_samples=300), tmp_path_factory.mktemp("profile") / "p"))


def tiny(out, profile, **overrides) -> ExperimentConfig:
    values = dict(name="tiny", factor="n_md", values=[2, 3], policies=["local", "greedy"], slots=6, seeds=[0, 1],
                  profile=profile, output_dir=str(out))
    return ExperimentConfig(**{**values, **overrides})


def without_timing(summary: dict) -> dict:
    return {**summary, "points": [{**p, "policies": {k: {m: v for m, v in e.items() if m != "decision_ms_median"}
                                                     for k, e in p["policies"].items()}} for p in summary["points"]]}


def test_sweep_writes_its_result_folder_and_resumes(tmp_path, profile_path):
    cfg = tiny(tmp_path / "run", profile_path)
    summary = run_experiment(cfg, workers=1)
    assert summary["experiment"] == "tiny" and summary["factor"] == "n_md"
    assert [p["value"] for p in summary["points"]] == [2, 3]
    for point in summary["points"]:
        assert set(point["policies"]) == {"local", "greedy"}
        for entry in point["policies"].values():
            assert {"avg_accuracy", "reliability", "throughput_per_s", "reward", "decision_ms_median"} <= set(entry)
            assert 0 <= entry["avg_accuracy"] <= 1 and 0 <= entry["reliability"] <= 1 and entry["seeds"] == 2
    out = tmp_path / "run"
    for name in ("summary.json", "table.csv", "config.yaml", "scenario.yaml", "metadata.json",
                 "avg_accuracy.png", "reliability.png", "throughput_per_s.png"):
        assert (out / name).stat().st_size > 0, name
    assert len((out / "table.csv").read_text().splitlines()) == 1 + 2 * 2
    assert json.loads((out / "summary.json").read_text())["points"] == summary["points"]
    # Resume: only the missing job runs again, and the numbers do not change.
    jobs = sorted((out / "jobs").glob("*.json"))
    assert len(jobs) == 2 * 2 * 2
    jobs[0].unlink()
    seen = []
    again = run_experiment(cfg, workers=1, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (7, 8) and seen[-1] == (8, 8)
    assert json.loads((out / "metadata.json").read_text())["jobs_resumed"] == 7
    assert without_timing(again) == without_timing(summary)
    # A changed config invalidates the finished jobs instead of mixing old and new numbers.
    changed = run_experiment(tiny(tmp_path / "run", profile_path, slots=7), workers=1)
    assert json.loads((out / "metadata.json").read_text())["jobs_resumed"] == 0 and changed["slots"] == 7


def test_local_processes_and_ray_give_identical_results(tmp_path, profile_path):
    pytest.importorskip("ray")
    local = run_experiment(tiny(tmp_path / "local", profile_path, seeds=[3]), backend="local", workers=2)
    ray = run_experiment(tiny(tmp_path / "ray", profile_path, seeds=[3]), backend="ray", workers=2)
    assert without_timing(local) == without_timing(ray)


def test_bad_experiments_are_clear_errors(tmp_path, profile_path):
    with pytest.raises(ConfigError, match="no field"):
        with_factor(Scenario(), "tasks.nope", 1)
    with pytest.raises(ConfigError, match="invalid scenario"):
        with_factor(Scenario(), "n_md", 0)
    assert with_factor(Scenario(), "channel.csi_error_var", 0.3).channel.csi_error_var == 0.3
    assert with_factor(Scenario(), "n_md", 7.0).n_md == 7
    with pytest.raises(ValueError, match="unknown policies"):
        tiny(tmp_path, profile_path, policies=["local", "telepathy"])
    with pytest.raises(ValueError, match="factor together"):
        tiny(tmp_path, profile_path, values=[])
    with pytest.raises(ConfigError, match="backend"):
        run_experiment(tiny(tmp_path / "x", profile_path), backend="carrier-pigeon")


def test_shipped_experiment_configs_validate():
    from pathlib import Path

    from grl_aecnn.config import load_config

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "experiments").glob("*.yaml"))
    assert {"default", "demo", "n-md"} <= {c.stem for c in configs}
    for path in configs:
        cfg = load_config(path, ExperimentConfig)
        scenario = load_config(cfg.scenario, Scenario)
        for value in cfg.values:
            with_factor(scenario, cfg.factor, value)
    default = load_config(configs[[c.stem for c in configs].index("default")], ExperimentConfig)
    base = load_config(default.scenario, Scenario)
    assert base.n_md >= 10 and base.n_es >= 3 and base.channel.csi_error_var > 0 and default.slots >= 2000
    assert len(default.seeds) >= 3


def test_jobs_of_learned_policies_are_keyed_by_their_weights(monkeypatch, tmp_path):
    """A finished job is reused only with the same weights: the job key holds the SHA-256 of the shipped
    weights a learned policy loads (nothing for the heuristics), so retrained weights rerun its jobs."""
    from grl_aecnn import zoo
    from grl_aecnn.experiments import evaluate

    cfg = ExperimentConfig(name="keys", policies=("grl", "greedy"), slots=5, seeds=(0,))
    (tmp_path / "grl-default.json").write_text(json.dumps({"weights_sha256": "a" * 64}))
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    _, jobs = evaluate.plan_jobs(cfg)
    by_policy = {j["policy"]: j for j in jobs}
    assert by_policy["grl"]["weights_id"] == "a" * 64 and by_policy["greedy"]["weights_id"] == ""
    before = evaluate.job_key(by_policy["grl"])
    (tmp_path / "grl-default.json").write_text(json.dumps({"weights_sha256": "b" * 64}))
    _, jobs = evaluate.plan_jobs(cfg)
    assert evaluate.job_key(next(j for j in jobs if j["policy"] == "grl")) != before
    # each GRL variant is keyed by its own agent's weights only
    variants = ExperimentConfig(name="keys", policies=("grl", "grl-deepjscc"), slots=5, seeds=(0,))
    (tmp_path / "grl-deepjscc-default.json").write_text(json.dumps({"weights_sha256": "e" * 64}))
    _, jobs = evaluate.plan_jobs(variants)
    assert [j["weights_id"] for j in jobs] == ["b" * 64, "e" * 64]
    # DROO: one network per (N, M); only the one a job loads keys it
    droo = ExperimentConfig(name="keys", policies=("droo",), slots=5, seeds=(0,), factor="n_md", values=(5, 10))
    for n, sha in ((5, "c"), (10, "d")):
        (tmp_path / f"droo-default-n{n}.json").write_text(json.dumps({"weights_sha256": sha * 64,
                                                                        "shape": {"n_md": n, "n_es": 3}}))
    _, jobs = evaluate.plan_jobs(droo)
    assert [j["weights_id"] for j in jobs] == ["c" * 64, "d" * 64]
    # the card's config (what load_agent builds the agent from) counts too
    (tmp_path / "grl-default.json").write_text(json.dumps({"weights_sha256": "b" * 64, "config": {"anchor": True}}))
    _, jobs = evaluate.plan_jobs(cfg)
    assert evaluate.job_key(next(j for j in jobs if j["policy"] == "grl")) != before
    assert next(j for j in jobs if j["policy"] == "grl")["weights_id"].startswith("b" * 64 + "+")


def test_jobs_are_keyed_by_the_simulation_code_and_the_profile_options(monkeypatch):
    """A change to the simulator's or the policies' source, or to a profile's option metadata, makes the
    finished jobs stale; a sweep also refuses repeated seeds, which it would count twice."""
    from grl_aecnn.experiments import evaluate
    from grl_aecnn.profile import synthetic_profile

    cfg = ExperimentConfig(name="keys", policies=("greedy",), slots=5, seeds=(0,))
    _, jobs = evaluate.plan_jobs(cfg)
    assert jobs[0]["code_id"] == evaluate.code_id() and len(evaluate.code_id()) == 64
    before = evaluate.job_key(jobs[0])
    monkeypatch.setattr(evaluate, "code_id", lambda: "0" * 64)
    _, jobs = evaluate.plan_jobs(cfg)
    assert evaluate.job_key(jobs[0]) != before
    profile = synthetic_profile(seed=0, n_samples=50)
    renamed = dataclasses.replace(profile, options=(dataclasses.replace(profile.options[0], device_flops=1.0),
                                                    *profile.options[1:]))
    assert evaluate.profile_id(renamed) != evaluate.profile_id(profile)
    with pytest.raises(ValueError, match="repeat"):
        ExperimentConfig(name="keys", policies=("greedy",), seeds=(0, 0))
