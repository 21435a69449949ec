import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

from grl_aecnn.cli import app
from grl_aecnn.mec import MecError, MecSimulator, Scenario
from grl_aecnn.mec.env import MecEnv
from grl_aecnn.policies import Policy, make_policy
from grl_aecnn.profile import synthetic_profile

PROFILE = synthetic_profile(seed=0, n_samples=300)
SMALL = Scenario(n_md=5, n_es=2, episode_slots=4, mobility={"model": "random_waypoint"})


def run(policy: str, seed: int, slots: int = 8, scenario: Scenario = SMALL) -> MecSimulator:
    sim = MecSimulator(scenario, PROFILE, seed=seed)
    pol = make_policy(policy, seed)
    assert isinstance(pol, Policy)
    for _ in range(slots):
        sim.step(pol.act(sim.observe()))
    return sim


@pytest.mark.parametrize("policy", ["local", "random", "greedy"])
def test_same_seed_same_log(policy):
    a, b = run(policy, 7).event_log_csv(), run(policy, 7).event_log_csv()
    assert a == b and a.count("\n") == 1 + 8 * 5
    assert run(policy, 8).event_log_csv() != a


def test_environment_independent_of_policy():
    a, b = run("local", 3), run("random", 3)
    assert np.array_equal(a.gain_true, b.gain_true) and np.array_equal(a.sample, b.sample)


def test_outcomes_consistent():
    sim = run("random", 1, slots=20)
    c = sim.log_arrays()
    s = c["success"].astype(bool)
    assert np.all(c["latency_ms"][s] <= c["deadline_ms"][s] * (1 + 1e-9))
    assert np.all(c["energy_j"][s] <= SMALL.device.energy_budget_j * (1 + 1e-9))
    assert np.all(~c["correct"].astype(bool) | s)
    local = c["es"] < 0
    assert np.all(c["t_upload_ms"][local] == 0)
    summ = sim.summary()
    assert 0 <= summ["avg_accuracy"] <= summ["reliability"] <= 1


def test_bad_action_is_a_typed_error():
    sim = MecSimulator(SMALL, PROFILE, seed=0)
    with pytest.raises(MecError):
        sim.step(np.full(5, sim.n_actions))


def test_env_checker_and_graph():
    env = MecEnv(SMALL, PROFILE)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    g = env.graph()
    assert g.num_nodes == 7 and g.edge_index.shape == (2, 20) and g.edge_attr.shape == (20, 2)
    obs2, _ = env.reset(seed=5)
    assert np.array_equal(obs, obs2)


def test_cli_simulate(tmp_path):
    scen = tmp_path / "s.yaml"
    scen.write_text("name: tiny\nn_md: 4\nn_es: 2\n")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["simulate", "--synthetic-profile", "--scenario", str(scen), "--policy", "greedy", "--slots", "5",
                                      "--seed", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    r = json.loads(out.read_text())
    assert r["profile"] == "synthetic" and r["scenario"] == "tiny" and r["policy"] == "greedy" and r["slots"] == 5
    for k in ("avg_accuracy", "reliability", "throughput_per_s", "energy_per_task_j"):
        assert isinstance(r[k], float)
    assert set(r["latency_ms"]) >= {"p50", "p95"}
    assert (tmp_path / r["event_log"]).read_text().count("\n") == 1 + 4 * 5
    assert (tmp_path / r["resolved_scenario"]).exists()
    bad = CliRunner().invoke(app, ["simulate", "--synthetic-profile", "--scenario", str(scen), "--policy", "nope", "--slots", "1"])
    assert bad.exit_code == 2 and "unknown policy" in bad.output


def test_cli_simulate_needs_a_profile_choice(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--slots", "1"])
    assert result.exit_code == 2 and "--synthetic-profile" in result.output
