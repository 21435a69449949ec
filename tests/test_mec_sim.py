import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

from grl_aecnn.cli import app
from grl_aecnn.mec import MecBatch, MecError, MecSimulator, Scenario
from grl_aecnn.mec.env import MecEnv, MecVectorEnv, flat_observation
from grl_aecnn.policies import Policy, make_policy
from grl_aecnn.profile import synthetic_profile
from grl_aecnn.zoo import ZOO_DIR

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


# sha256 of `run("greedy", 3, 20)`'s event log on two scenarios, measured on the simulator before it was
# batched (commit 54af645): the batched core must keep single environments bit for bit
GOLDEN_LOG_SHA256 = {"default": "c45c41f2fdf672bbdaa5c1227d4db375c4ac0f3cc9d84a7a47a1db1dc00f7ac2",
                     "small": "c082aa8bbd476eddaecc6a3e64fbea92cabf64946a03c866114942109d61e1c5"}


@pytest.mark.parametrize("name", sorted(GOLDEN_LOG_SHA256))
def test_seeded_event_log_golden(name):
    scenario = Scenario(n_md=10, n_es=3) if name == "default" else SMALL
    log = run("greedy", 3, slots=20, scenario=scenario).event_log_csv()
    assert hashlib.sha256(log.encode()).hexdigest() == GOLDEN_LOG_SHA256[name]


def replay_alone(batch: MecBatch, env: int, actions: np.ndarray) -> dict:
    """Step a single simulator put in `env`'s state of the batch (everything `step` reads)."""
    single = MecSimulator(batch.sc, batch.profile, seed=0, allocator=batch.allocator)
    for name in ("md_flops", "md_j_per_flop", "gain_true", "gain_est", "avail_true", "avail_est", "has_task", "sample",
                 "deadline_s"):
        setattr(single.batch, name, getattr(batch, name)[env:env + 1].copy())
    single.batch.slot = batch.slot
    return single.step(actions)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), n_envs=st.integers(2, 5), arrival=st.sampled_from([1.0, 0.6]))
def test_batch_envs_step_as_if_alone(seed, n_envs, arrival):
    """Each env of a batch gets exactly the outcome a lone simulator in its state gets: grouping the
    allocation by (env, ES) mixes nothing across envs."""
    scenario = Scenario(n_md=6, n_es=2, tasks={"arrival_prob": arrival}, mobility={"model": "random_waypoint"})
    batch = MecBatch(scenario, PROFILE, seed=seed, n_envs=n_envs)
    pols = [make_policy("greedy" if e % 2 else "random", seed + e) for e in range(n_envs)]
    for _ in range(3):
        actions = np.stack([pol.act(batch.observe(e)) for e, pol in enumerate(pols)])
        alone = [replay_alone(batch, e, actions[e]) for e in range(n_envs)]
        out = batch.step(actions)
        rec = out["record"]
        for e, single in enumerate(alone):
            rows = rec["env"] == e
            for key, value in single["record"].items():
                if key != "env":
                    np.testing.assert_array_equal(rec[key][rows], value, err_msg=key)
            assert out["n_tasks"][e] == single["n_tasks"] and out["n_success"][e] == single["n_success"]
            assert out["reward"][e] == single["reward"]


def test_batch_is_seeded_and_its_envs_differ():
    def log(seed):
        batch = MecBatch(SMALL, PROFILE, seed=seed, n_envs=3)
        pol = make_policy("random", 0)
        for _ in range(4):
            batch.step(np.stack([pol.act(batch.observe(e)) for e in range(3)]))
        return batch

    a, b = log(5), log(5)
    assert [a.event_log_csv(e) for e in range(3)] == [b.event_log_csv(e) for e in range(3)]
    assert a.event_log_csv(0) != a.event_log_csv(1) and not np.array_equal(a.gain_true[0], a.gain_true[1])
    pooled_log = a.event_log_csv().splitlines()
    assert pooled_log[0].startswith("env,slot,md,") and len(pooled_log) == 1 + 3 * 4 * SMALL.n_md
    pooled, per_env = a.summary(), [a.summary(e) for e in range(3)]
    assert pooled["tasks"] == sum(s["tasks"] for s in per_env) == 3 * 4 * SMALL.n_md
    assert pooled["throughput_per_s"] == pytest.approx(np.mean([s["throughput_per_s"] for s in per_env]))
    with pytest.raises(MecError):
        a.step(np.zeros((2, SMALL.n_md), np.int64))
    with pytest.raises(MecError):
        MecBatch(SMALL, PROFILE, n_envs=0)
    with pytest.raises(MecError):
        a.summary(3)
    sim = MecSimulator(SMALL, PROFILE)
    with pytest.raises(AttributeError):
        sim.slot = 7  # state lives in sim.batch; a wrapper copy would silently diverge
    with pytest.raises(MecError):
        sim.step(np.zeros(SMALL.n_md))  # float actions


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


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), policy=st.sampled_from(["local", "random", "greedy", "greedy-aecnn"]),
       n_md=st.integers(1, 8), n_es=st.integers(1, 3), arrival=st.floats(0.2, 1.0), csi=st.floats(0.0, 0.5),
       allocator=st.sampled_from(["optimal", "equal"]))
def test_outcome_invariants_hold_in_any_scenario(seed, policy, n_md, n_es, arrival, csi, allocator):
    """Whatever the scenario, policy and allocator: shares of an ES never exceed its resources, power
    never exceeds P_max, a success met its deadline and energy budget, a correct answer is a success,
    a local task uploads nothing, and accuracy <= reliability."""
    sc = Scenario(n_md=n_md, n_es=n_es, tasks={"arrival_prob": arrival}, channel={"csi_error_var": csi})
    sim = MecSimulator(sc, PROFILE, seed=seed, allocator=allocator)
    pol = make_policy(policy, seed)
    for _ in range(5):
        sim.step(pol.act(sim.observe()))
    c = sim.log_arrays()
    s, off = c["success"].astype(bool), c["es"] >= 0
    for share in ("bw_share", "cpu_share"):
        for key in set(zip(c["slot"][off], c["es"][off])):
            on = off & (c["slot"] == key[0]) & (c["es"] == key[1])
            assert np.nansum(c[share][on]) <= 1 + 1e-9
    assert np.all(np.nan_to_num(c["power_w"]) <= sc.device.p_max_w * (1 + 1e-9))
    assert np.all(c["latency_ms"][s] <= c["deadline_ms"][s] * (1 + 1e-9))
    assert np.all(c["energy_j"][s] <= sc.device.energy_budget_j * (1 + 1e-9))
    assert np.all(~c["correct"].astype(bool) | s)
    assert np.all(c["t_upload_ms"][~off] == 0)
    summary = sim.summary()
    assert 0 <= summary["avg_accuracy"] <= summary["reliability"] <= 1


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


def test_vector_env_matches_single_envs_and_autoresets():
    single, vec = MecEnv(SMALL, PROFILE), MecVectorEnv(SMALL, PROFILE, num_envs=1)
    obs, _ = single.reset(seed=9)
    vobs, _ = vec.reset(seed=9)
    assert vec.observation_space.contains(vobs) and np.array_equal(vobs[0], obs)
    for _ in range(SMALL.episode_slots):
        action = single.action_space.sample()
        obs, reward, _, truncated, _ = single.step(action)
        vobs, vreward, _, vtruncated, _ = vec.step(action[None])
        assert np.array_equal(vobs[0], obs) and vreward[0] == reward and vtruncated[0] == truncated
    assert truncated
    _, vreward, _, vtruncated, _ = vec.step(vec.action_space.sample())  # next-step autoreset
    assert vec.batch.slot == 0 and vreward[0] == 0 and not vtruncated[0]
    many = MecVectorEnv(SMALL, PROFILE, num_envs=3)
    vobs, _ = many.reset(seed=2)
    vobs, reward, _, _, info = many.step(many.action_space.sample())
    assert many.observation_space.contains(vobs) and reward.shape == (3,) and info["n_tasks"].shape == (3,)
    assert info["_n_tasks"].all() and np.array_equal(info["slot"], [1, 1, 1])
    with pytest.raises(MecError):
        many.step(many.action_space.sample().astype(float))
    with pytest.raises(MecError):
        many.reset(options={"reset_mask": np.array([True, False, False])})
    for e in range(3):
        assert np.array_equal(vobs[e], flat_observation(many.batch.observe(e)))


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
    # the same numbers as the simulator run directly (run_simulation's synthetic profile, same seed)
    direct = MecSimulator(Scenario(name="tiny", n_md=4, n_es=2), synthetic_profile(seed=0, n_samples=2000), seed=2)
    greedy = make_policy("greedy", 2)
    for _ in range(5):
        direct.step(greedy.act(direct.observe()))
    expected = direct.summary()
    for k in ("tasks", "avg_accuracy", "reliability", "throughput_per_s", "energy_per_task_j"):
        assert r[k] == expected[k], k
    assert r["tasks"] == 4 * 5 and 0 <= r["avg_accuracy"] <= r["reliability"] <= 1
    assert set(r["latency_ms"]) >= {"p50", "p95"}
    assert (tmp_path / r["event_log"]).read_text().count("\n") == 1 + 4 * 5
    assert (tmp_path / r["resolved_scenario"]).exists()
    bad = CliRunner().invoke(app, ["simulate", "--synthetic-profile", "--scenario", str(scen), "--policy", "nope", "--slots", "1"])
    assert bad.exit_code == 2 and "unknown policy" in bad.output


def test_cli_simulate_needs_a_profile_choice(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--slots", "1"])
    assert result.exit_code == 2 and "--synthetic-profile" in result.output


def test_scenario_without_device_classes_is_a_config_error(tmp_path):
    from grl_aecnn.config import load_config
    from grl_aecnn.errors import ConfigError
    path = tmp_path / "no-classes.yaml"
    path.write_text("device:\n  classes: []\n")
    with pytest.raises(ConfigError, match="device.classes"):
        load_config(path, Scenario)


def test_replaced_scenario_is_validated_and_otherwise_equal():
    from grl_aecnn.errors import ConfigError
    base = Scenario()
    assert base.replaced(n_md=5) == base.model_copy(update={"n_md": 5})
    with pytest.raises(ConfigError, match="n_md"):
        base.replaced(n_md=0)


def test_cli_simulate_on_the_shipped_profile(tmp_path):
    shipped = ZOO_DIR / "profile-resnet20-cifar10.json"
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["simulate", "--profile", str(shipped), "--policy", "greedy", "--slots", "3",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" not in result.output
    r = json.loads(out.read_text())
    assert r["profile"] == str(shipped) and r["tasks"] == 10 * 3  # the default scenario: 10 MDs
    assert 0 < r["avg_accuracy"] <= r["reliability"] <= 1
