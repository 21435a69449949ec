"""Policies (issue 6): planner, candidates, exhaustive search and oracle, GRL-AECNN and DROO-AECNN
agents, training with checkpoints and resume, the registry and the CLI. Tiny budgets throughout."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from grl_aecnn.cli import app
from grl_aecnn.errors import CheckpointError, ConfigError
from grl_aecnn.mec import MecError, MecSimulator, Scenario
from grl_aecnn.mec.allocation import EsResources, EsTasks, solve
from grl_aecnn.policies import DESCRIPTIONS, Policy, make_policy
from grl_aecnn.policies.grl import AgentConfig, build_agent, candidates, load_agent, train_agent
from grl_aecnn.policies.planner import BETA_GRID, LAMBDA_GRID, Plan, _argmin_priced, allowed_options
from grl_aecnn.policies.registry import PerSizeDroo
from grl_aecnn.policies.search import ExhaustiveSearch, PerfectInformationOracle
from grl_aecnn.profile import synthetic_profile
from grl_aecnn.profile.synthetic import _LEVELS
from grl_aecnn.zoo import add_to_zoo

PROFILE = synthetic_profile(seed=0, n_samples=300)
FEW = synthetic_profile(seed=0, n_samples=300, levels=(_LEVELS[1], _LEVELS[3], _LEVELS[5]), with_symbols=True)


def test_observe_perfect_is_the_truth_and_default_unchanged():
    sim = MecSimulator(Scenario(n_md=4, n_es=2), PROFILE, seed=1)
    est, true = sim.observe(), sim.observe(perfect=True)
    assert not est.perfect and true.perfect
    assert np.array_equal(est.gain_est, sim.gain_est) and np.array_equal(true.gain_est, sim.gain_true)
    assert np.array_equal(true.avail_est, sim.avail_true) and not np.array_equal(est.gain_est, true.gain_est)
    assert est.option_names == tuple(PROFILE.names)


@pytest.mark.parametrize("seed", range(6))
def test_planner_served_sets_are_feasible_for_the_allocation_solver(seed):
    """What the planner expects an ES to serve, the exact solver (same mean payloads, same estimates)
    serves too; local tasks score their device outcome."""
    sim = MecSimulator(Scenario(n_md=8, n_es=2), FEW, seed=seed)
    obs = sim.observe()
    plan = Plan(obs, allowed_options(obs, None))
    cand = np.random.default_rng(seed).integers(plan.n_actions, size=(20, obs.n_md))
    ev = plan.evaluate(cand)
    es_of, opt_of = obs.decode(plan.sim_action[cand])
    for c in range(len(cand)):
        for m in range(obs.n_es):
            idx = np.flatnonzero(ev.served[c] & (es_of[c] == m))
            if not len(idx):
                continue
            o = opt_of[c, idx]
            sym = obs.option_kind[o] == "symbols"
            t_dev = obs.option_device_flops[o] / obs.md_flops[idx]
            e_dev = obs.option_device_flops[o] * obs.md_j_per_flop[idx]
            t = EsTasks(sym, obs.option_payload_mean[o] * np.where(sym, 1, 8), obs.option_server_flops[o],
                        obs.deadline_s[idx] - t_dev, obs.energy_budget_j[idx] - e_dev, obs.gain_est[idx, m],
                        np.ones(len(idx)))
            res = EsResources(obs.es_bandwidth_hz, obs.es_capacity_flops * obs.avail_est[m], obs.p_max_w, obs.n0_w_hz)
            assert solve(t, res).served.all()
    local = cand == 0
    assert np.allclose(ev.value[local], np.broadcast_to(plan.local_value, cand.shape)[local])


@pytest.mark.parametrize("seed", range(3))
def test_planner_headroom_keeps_each_es_below_its_limit(seed):
    """With headroom h the admitted shares of every ES sum to at most 1 - h, and the tasks served are a
    subset of those served without it (the same admission order, a stricter limit)."""
    obs = MecSimulator(Scenario(n_md=20, n_es=1), FEW, seed=seed).observe()
    cols = allowed_options(obs, None)
    cand = np.random.default_rng(seed).integers(1 + len(cols), size=(30, obs.n_md))
    full, kept = Plan(obs, cols).evaluate(cand), Plan(obs, cols, headroom=0.75).evaluate(cand)
    assert np.all(kept.load[kept.served] <= 0.25 + 1e-12) and full.load.max() > 0.25
    assert not np.any(kept.served & ~full.served) and kept.served.sum() < full.served.sum()
    with pytest.raises(MecError, match="headroom"):
        Plan(obs, cols, headroom=1.0)


def test_exhaustive_search_is_exact_on_the_planner_objective():
    sim = MecSimulator(Scenario(n_md=4, n_es=2), FEW, seed=3)
    search = ExhaustiveSearch(options=None)
    for _ in range(4):
        obs = sim.observe()
        plan = Plan(obs, allowed_options(obs, None))
        brute = plan.evaluate(np.array(list(itertools.product(range(plan.n_actions), repeat=obs.n_md)))).reward.max()
        actions = search.act(obs)
        agent_actions = np.searchsorted(plan.sim_action, actions)
        assert plan.evaluate(agent_actions[None]).reward[0] == pytest.approx(brute)
        sim.step(actions)


def test_oracle_needs_the_truth_and_exhaustive_refuses_large_instances():
    sim = MecSimulator(Scenario(n_md=3, n_es=2), FEW, seed=0)
    with pytest.raises(MecError, match="perfect=True"):
        PerfectInformationOracle().act(sim.observe())
    assert PerfectInformationOracle().act(sim.observe(perfect=True)).shape == (3,)
    with pytest.raises(MecError, match="perfect=False"):
        ExhaustiveSearch().act(sim.observe(perfect=True))
    big = MecSimulator(Scenario(n_md=12, n_es=3), PROFILE, seed=0)
    with pytest.raises(MecError, match="max_joint"):
        ExhaustiveSearch().act(big.observe())


def test_candidates_are_ordered_single_changes_of_the_least_certain_mds():
    logits = torch.tensor([[2.0, 1.9, -5.0], [3.0, -1.0, -2.0], [0.0, 0.5, -1e9]])
    cand = candidates(logits, 4)
    assert cand.tolist()[0] == [0, 0, 1]
    assert len({tuple(c) for c in cand}) == len(cand) == 4
    assert all((c != cand[0]).sum() == 1 for c in cand[1:])
    logp = torch.log_softmax(logits, 1).numpy()
    joint = [logp[np.arange(3), c].sum() for c in cand]
    assert joint == sorted(joint, reverse=True) and cand[1].tolist() == [1, 0, 1]
    assert all(c[2] != 2 for c in cand)  # disallowed action never proposed
    assert len(candidates(logits, 100)) == 1 + 2 + 2 + 1  # every allowed single change, no more


def test_option_filter_restricts_actions_and_fails_typed():
    sim = MecSimulator(Scenario(n_md=3, n_es=2), PROFILE, seed=0)
    obs = sim.observe()
    names = [obs.option_names[o] for o in obs.offload_options[allowed_options(obs, ("deepjscc:",))]]
    assert names == ["deepjscc:k512"]
    with pytest.raises(MecError, match="bottlenetpp"):
        allowed_options(obs, ("bottlenetpp:",))
    with pytest.raises(MecError, match="jpeg"):
        make_policy("full-offload").act(obs)  # the synthetic profile has no input codec


def test_registry_policies_follow_the_protocol():
    assert {"grl", "grl-bottlenetpp", "grl-deepjscc", "droo", "exhaustive", "oracle", "full-offload", "greedy",
            "local", "random"} <= set(DESCRIPTIONS)
    for name in ("exhaustive", "oracle", "full-offload", "greedy", "greedy-aecnn", "local", "random"):
        assert isinstance(make_policy(name), Policy)
    with pytest.raises(MecError, match="unknown policy"):
        make_policy("nope")


def test_grl_variants_share_the_recipe_and_differ_in_action_set():
    """GRL-BottleNet++ and GRL-DeepJSCC are GRL-AECNN's algorithm with every training setting equal, on
    their own codec's levels (plus local and the input image)."""
    from grl_aecnn.config import load_config

    configs = Path(__file__).parents[1] / "configs" / "policies"
    grl = load_config(configs / "grl.yaml", AgentConfig)
    for codec in ("bottlenetpp", "deepjscc"):
        variant = load_config(configs / f"grl-{codec}.yaml", AgentConfig)
        assert variant.name == f"grl-{codec}" and variant.options == (f"{codec}:", *grl.options[1:])
        assert variant.model_dump(exclude={"name", "options"}) == grl.model_dump(exclude={"name", "options"})


def test_greedy_aecnn_only_chooses_local_or_aecnn_levels():
    sim = MecSimulator(Scenario(n_md=6, n_es=2), FEW, seed=3)
    obs = sim.observe()
    actions = make_policy("greedy-aecnn").act(obs)
    k = len(obs.offload_options)
    chosen = {obs.option_names[obs.offload_options[(a - 1) % k]] for a in actions if a > 0}
    assert chosen and all(name.startswith("aecnn:") for name in chosen)


TINY = dict(hidden=16, critic_hidden=8, k_max=4, k_update_every=4, memory_size=64, batch_size=8, train_every=2,
            episode_slots=5, checkpoint_every=1, n_md_range=(3, 5))


def test_train_checkpoint_resume_and_load(tmp_path):
    cfg = AgentConfig(**TINY)
    scenario = Scenario(n_md=4, n_es=2)
    log = []
    train_agent(cfg, scenario, FEW, 10, tmp_path, log=log.append)
    ckpt = json.loads((tmp_path / "checkpoint.json").read_text())
    assert ckpt["slot"] == 10 and ckpt["episode"] == 2 and len(log) == 2
    card = train_agent(cfg, scenario, FEW, 15, tmp_path, resume=True, log=log.append)
    assert card["slots"] == 15 and card["episodes"] == 3 and "resumed at slot 10" in log[2]
    assert card["profile"]["synthetic"] and card["policy"] == "grl"
    agent = load_agent(tmp_path / "card.json")
    sim = MecSimulator(Scenario(n_md=6, n_es=2), FEW, seed=0)
    assert agent.act(sim.observe()).shape == (6,)
    with pytest.raises(CheckpointError, match="another config"):
        train_agent(AgentConfig(**{**TINY, "lr": 0.5}), scenario, FEW, 20, tmp_path, resume=True, log=log.append)
    (tmp_path / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_agent(tmp_path / "card.json")


def test_droo_fixes_n_and_learns(tmp_path):
    cfg = AgentConfig(**{**TINY, "policy": "droo", "critic": False, "n_md_range": None})
    card = train_agent(cfg, Scenario(n_md=4, n_es=2), FEW, 10, tmp_path, log=lambda _: None)
    assert card["shape"] == {"n_md": 4, "n_es": 2, "n_options": 3}
    droo = load_agent(tmp_path / "card.json")
    assert droo.act(MecSimulator(Scenario(n_md=4, n_es=2), FEW, seed=1).observe()).shape == (4,)
    with pytest.raises(MecError, match="fixes them"):
        droo.act(MecSimulator(Scenario(n_md=5, n_es=2), FEW, seed=1).observe())
    # the registry's DROO picks the shipped network of each slot's N and names the command for a missing one
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    add_to_zoo(tmp_path, zoo)
    per_size = PerSizeDroo(zoo)
    obs = MecSimulator(Scenario(n_md=4, n_es=2), FEW, seed=1).observe()
    assert np.array_equal(per_size.act(obs), droo.act(obs))
    with pytest.raises(MecError, match="--policy droo --n-md 5"):
        per_size.act(MecSimulator(Scenario(n_md=5, n_es=2), FEW, seed=1).observe())


def test_droo_with_every_option_sizes_its_network_for_all_of_them():
    """`options: null` means every offloading option, for DROO's fixed output layer too."""
    from grl_aecnn.policies.grl import _shape_args
    shape = _shape_args(AgentConfig(**{**TINY, "policy": "droo", "critic": False, "n_md_range": None, "options": None}), Scenario(n_md=4, n_es=2), FEW)
    assert shape == {"n_md": 4, "n_es": 2, "n_options": len(FEW.offload_indices)}
    with pytest.raises(MecError, match="no offloading option starting with"):
        _shape_args(AgentConfig(**{**TINY, "policy": "droo", "critic": False, "n_md_range": None, "options": ("nosuch:",)}), Scenario(n_md=4, n_es=2), FEW)


def test_untrained_grl_actor_starts_as_greedy():
    sim = MecSimulator(Scenario(n_md=6, n_es=2), PROFILE, seed=2)
    agent = build_agent(AgentConfig(options=None))
    obs = sim.observe()
    plan = Plan(obs, allowed_options(obs, None))
    with torch.no_grad():
        logits = agent.actor(agent.actor.encode(obs, plan))
    assert np.array_equal(logits.argmax(1).numpy(), np.argmax(plan.standalone, axis=1))


def test_anchor_keeps_greedys_joint_action_among_the_candidates():
    """A drifted actor (its prior flipped: every MD's likeliest action is its stand-alone worst) with the
    anchor still plans at least as well as greedy's joint action; without it, worse. DROO refuses it."""
    obs = MecSimulator(Scenario(n_md=8, n_es=2), PROFILE, seed=3).observe()
    plan = Plan(obs, allowed_options(obs, None))
    greedy_value = plan.evaluate(np.argmax(np.where(plan.mask, plan.standalone, -np.inf), axis=1)[None]).reward[0]
    values = {}
    for anchor in (False, True):
        agent = build_agent(AgentConfig(options=None, critic=False, anchor=anchor, k_max=2))
        with torch.no_grad():
            agent.actor.prior.fill_(-10.0)
        _, d = agent.decide(obs)
        values[anchor] = plan.evaluate(d.action[None]).reward[0]
    assert values[True] >= greedy_value - 1e-9 > values[False]
    with pytest.raises(ValueError, match="anchor"):
        AgentConfig(policy="droo", critic=False, n_md_range=None, anchor=True)


def test_graph_encoder_is_gcnconv():
    """The encoder calls GCNConv's arithmetic directly (speed); it must equal GCNConv's own forward, and
    gradients must flow through the sparse product as they do in training."""
    sim = MecSimulator(Scenario(n_md=7, n_es=3), PROFILE, seed=4)
    agent = build_agent(AgentConfig(options=None))
    obs = sim.observe()
    g = agent.actor.encode(obs, Plan(obs, allowed_options(obs, None)))
    enc = agent.actor.encoder
    h = torch.relu(enc.inp(g.x))
    for conv in enc.convs:
        h = h + torch.relu(conv(h, g.adj))
    torch.testing.assert_close(enc(g), h, rtol=1e-6, atol=1e-6)
    enc(g).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_cli_train_policy(tmp_path):
    cfg = tmp_path / "grl.yaml"
    cfg.write_text("\n".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in TINY.items()) + "\n")
    scen = tmp_path / "s.yaml"
    scen.write_text("name: tiny\nn_md: 4\nn_es: 2\n")
    args = ["train", "policy", "--policy", "grl", "--scenario", str(scen), "--slots", "5", "--config", str(cfg),
            "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "card.json").read_text())["name"] == "grl-tiny"
    droo_cfg = tmp_path / "droo.yaml"
    droo_cfg.write_text(cfg.read_text().replace("n_md_range: [3, 5]", "n_md_range: null") + "policy: droo\ncritic: false\n")
    sized = CliRunner().invoke(app, ["train", "policy", "--policy", "droo", "--scenario", str(scen), "--slots", "5",
                                     "--config", str(droo_cfg), "--n-md", "3", "--n-es", "1", "--out", str(tmp_path / "droo")])
    assert sized.exit_code == 0, sized.output
    card = json.loads((tmp_path / "droo" / "card.json").read_text())
    assert card["name"] == "droo-tiny-n3-m1" and card["shape"]["n_md"] == 3 and card["shape"]["n_es"] == 1
    bad = CliRunner().invoke(app, args[:3] + ["droo"] + args[4:])
    assert bad.exit_code == 2 and "not 'droo'" in bad.output


@pytest.mark.parametrize("limit", [1.0, 0.7])
def test_priced_minimiser_matches_brute_force(limit):
    """`_argmin_priced` (a count of steps whose saving beats the price) returns argmin_k phi_k + lambda
    beta_k over the feasible grid points: shares too small for the deadline (leading inf) and shares
    above the planner's limit (trailing inf) included."""
    rng = np.random.default_rng(0)
    c, s = rng.uniform(0.01, 0.5, (200, 1)), rng.uniform(0.0, 0.05, (200, 1))
    phi = c / (BETA_GRID[None, :] + s) ** rng.uniform(0.5, 2.0, (200, 1)) * 1e-3  # convex, decreasing
    phi[phi > 1.0] = np.inf
    phi[:, BETA_GRID > limit] = np.inf
    phi = phi[np.isfinite(phi).any(axis=1)]
    brute = np.argmin(phi[:, :, None] + LAMBDA_GRID[None, None, :] * BETA_GRID[None, :, None], axis=1)
    assert np.array_equal(_argmin_priced(phi), brute)


def test_blocked_options_are_never_chosen_and_training_with_subsets_unblocks(tmp_path):
    """`option_subsets`: per training episode a random part of the options is masked; a masked option is
    never chosen, and the saved agent has every option back."""
    agent = build_agent(AgentConfig(**TINY, options=None))
    sim = MecSimulator(Scenario(n_md=6, n_es=2), FEW, seed=3)
    k = len(allowed_options(sim.observe(), None))
    agent.blocked = np.arange(k) != 1  # only option 1 left
    n_offloaded = 0
    for _ in range(10):
        obs = sim.observe()
        actions = agent.act(obs)
        es, opt = obs.decode(actions)
        offloaded = actions > 0
        assert np.all(opt[offloaded] == obs.offload_options[1])
        n_offloaded += int(offloaded.sum())
        sim.step(actions)
    assert n_offloaded > 0
    card = train_agent(AgentConfig(**{**TINY, "option_subsets": True}, options=None), Scenario(n_md=4, n_es=2), FEW, 10,
                       tmp_path, log=lambda _: None)
    assert card["config"]["option_subsets"] and load_agent(tmp_path / "card.json").blocked is None


def test_select_policy_picks_the_best_validation_reward_and_ships_it(tmp_path):
    from grl_aecnn.experiments.select import select_policy
    from grl_aecnn.profile import save_profile

    scenario = Scenario(name="tiny", n_md=4, n_es=2)
    for seed in (0, 1):
        train_agent(AgentConfig(**TINY, seed=seed), scenario, FEW, 6, tmp_path / f"s{seed}", log=lambda _: None)
    runs = [tmp_path / "s0", tmp_path / "s1"]
    result = select_policy(runs, scenario, FEW, (3, 4), (1000,), slots=5)
    rewards = {row["run"]: row["reward"] for row in result["runs"]}
    assert [row["seed"] for row in result["runs"]] == [0, 1]
    assert all(len(row["rewards"]) == 2 for row in result["runs"])
    assert rewards[result["best"]] == max(rewards.values())
    # Each run is validated on the same layouts: again gives the same numbers.
    assert select_policy(runs, scenario, FEW, (3, 4), (1000,), slots=5) == result
    # A card is a run too (e.g. a shipped agent among retrained ones).
    assert select_policy([tmp_path / "s0" / "card.json"], scenario, FEW, (3, 4), (1000,), slots=5)["runs"][0][
        "rewards"] == result["runs"][0]["rewards"]
    with pytest.raises(ConfigError, match="overlap"):
        select_policy(runs, scenario, FEW, (4,), (1, 1000), slots=5)
    profile = save_profile(FEW, tmp_path / "few.json")
    scen = tmp_path / "s.yaml"
    scen.write_text("name: tiny\nn_md: 4\nn_es: 2\n")
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("grl_aecnn.zoo.ZOO_DIR", zoo_dir)
        out = CliRunner().invoke(app, ["select-policy", "--run", str(runs[0]), "--run", str(runs[1]), "--scenario",
                                       str(scen), "--profile", str(profile), "--n-md", "3", "--n-md", "4", "--seed",
                                       "1000", "--slots", "5", "--json", str(tmp_path / "sel.json"), "--ship"])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "sel.json").read_text()) == json.loads(json.dumps(result))
    assert (zoo_dir / "grl-tiny.json").exists() and "shipped grl-tiny" in out.output
