"""Properties of the upload model and the allocation solver (perfect CSI: estimates = truth)."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from grl_aecnn.mec import allocation
from grl_aecnn.mec.allocation import (EsResources, EsTasks, dof_needed, equal_shares, evaluate, power_rule, solve, solve_many,
                                     upload_time)

N0 = 10 ** ((-174 + 9 - 30) / 10)
RES = EsResources(1e7, 2e10, 0.2, N0)


def tasks_from(seed: int, n: int, symbols: bool = False) -> EsTasks:
    rng = np.random.default_rng(seed)
    sym = rng.random(n) < 0.3 if symbols else np.zeros(n, bool)
    return EsTasks(sym, np.where(sym, 512.0, rng.uniform(200, 16000, n)), rng.uniform(1e6, 5e7, n),
                   rng.uniform(0.002, 0.02, n), rng.uniform(1e-4, 2e-3, n), 10 ** rng.uniform(-13, -10, n),
                   rng.uniform(0.5, 1.5, n))


@given(st.integers(0, 10**6), st.floats(1e-4, 1), st.floats(1e-4, 1), st.floats(1e-3, 0.2), st.floats(1e-3, 0.2))
@settings(max_examples=100, deadline=None)
def test_more_bandwidth_or_power_never_slows_upload(seed, b1, b2, p1, p2):
    t = tasks_from(seed, 1)
    (b_lo, b_hi), (p_lo, p_hi) = sorted((b1, b2)), sorted((p1, p2))
    slow = upload_time(np.array([b_lo]), np.array([p_lo]), t, RES)
    assert upload_time(np.array([b_hi]), np.array([p_lo]), t, RES) <= slow * (1 + 1e-12)
    assert upload_time(np.array([b_lo]), np.array([p_hi]), t, RES) <= slow * (1 + 1e-12)


@given(st.integers(0, 10**6), st.integers(1, 12), st.booleans())
@settings(max_examples=25, deadline=None)
def test_shares_valid_and_never_worse_than_equal(seed, n, symbols):
    t = tasks_from(seed, n, symbols)
    a = solve(t, RES)
    assert np.all((a.beta >= 0) & (a.beta <= 1)) and np.all((a.phi >= 0) & (a.phi <= 1))
    assert a.beta.sum() <= 1 + 1e-9 and a.phi.sum() <= 1 + 1e-9
    assert np.all(a.power <= RES.p_max_w * (1 + 1e-12))
    ok, *_ = evaluate(a.beta, a.phi, a.power, t, RES)
    assert np.array_equal(ok, a.served)
    assert ok @ t.weight >= equal_shares(t, RES).served @ t.weight * (1 - 1e-6)


def brute_force(t: EsTasks, grid: np.ndarray) -> float:
    shares = np.array([b for b in itertools.product(grid, repeat=len(t)) if sum(b) <= 1 + 1e-12])
    power = power_rule(shares, dof_needed(t, RES), t, RES)
    bi, pi = (x.ravel() for x in np.meshgrid(np.arange(len(shares)), np.arange(len(shares)), indexing="ij"))
    ok, *_ = evaluate(shares[bi], shares[pi], power[bi], t, RES)
    return float((ok @ t.weight).max())


@given(st.integers(0, 10**6), st.integers(1, 3))
@settings(max_examples=20, deadline=None)
def test_never_beaten_by_grid_search(seed, n):
    t = tasks_from(seed, n)
    a = solve(t, RES)
    best = brute_force(t, np.linspace(0.05, 1, 20) if n < 3 else np.linspace(0.1, 1, 10))
    assert a.served @ t.weight >= best * (1 - 1e-6)


@given(st.integers(0, 10**6), st.lists(st.integers(0, 11), min_size=1, max_size=4), st.booleans())
@settings(max_examples=25, deadline=None)
def test_batched_solver_equals_one_es_at_a_time(seed, sizes, symbols):
    """solve_many (every ES of a slot at once, as the simulator calls it) gives each ES what solve gives
    it alone; weights rounded to 0.1 make ties between subsets common."""
    rng = np.random.default_rng(seed)
    parts = [tasks_from(seed + e, n, symbols) for e, n in enumerate(sizes)]
    for p in parts:
        p.weight[:] = np.round(p.weight, 1)
        p.weight[rng.random(len(p)) < 0.1] = 0.0  # zero weight: the empty set ties with serving the task
        p.server_flops[rng.random(len(p)) < 0.1] = 0.0
    flops = rng.uniform(5e9, 5e10, len(sizes))
    group = np.repeat(np.arange(len(sizes)), sizes)
    every = EsTasks(*(np.concatenate([getattr(p, f) for p in parts]) for f in EsTasks.__dataclass_fields__))
    batch = solve_many(every, group, EsResources(RES.bandwidth_hz, flops[group], RES.p_max_w, RES.n0_w_hz))
    for e, p in enumerate(parts):
        one = solve(p, EsResources(RES.bandwidth_hz, flops[e], RES.p_max_w, RES.n0_w_hz))
        sel = group == e
        assert np.array_equal(batch.served[sel], one.served)
        for f in ("beta", "phi", "power"):
            np.testing.assert_allclose(getattr(batch, f)[sel], getattr(one, f), rtol=1e-9, atol=0)


@given(st.integers(0, 10**6), st.integers(5, 8), st.booleans())
@settings(max_examples=15, deadline=None)
def test_heaviest_first_subset_search_equals_checking_all_subsets(seed, n, symbols):
    """From 5 candidates on, subsets are checked heaviest first; checking all 2^n gives the same."""
    t = tasks_from(seed, n, symbols)
    t.weight[:] = np.round(t.weight, 1)  # ties between subsets of the same weight
    fast = solve(t, RES)
    saved = allocation._SEARCH_MIN
    allocation._SEARCH_MIN = 99
    try:
        full = solve(t, RES)
    finally:
        allocation._SEARCH_MIN = saved
    assert np.array_equal(fast.served, full.served)
    for f in ("beta", "phi", "power"):
        np.testing.assert_array_equal(getattr(fast, f), getattr(full, f))


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1.0 - 1e-9, exclude_max=True))
def test_log_root_is_the_lower_lambert_branch(k):
    """`channel.log_root` (real Halley steps) solves ln(y) = k (y - 1) with y > 1, as scipy's complex
    Lambert W does; near k = 1 it is the more accurate of the two, so compare the residual there."""
    from scipy.special import lambertw

    from grl_aecnn.mec.channel import log_root

    y = float(log_root(np.full(256, k))[0])  # large enough for the Halley path
    assert y > 1.0
    assert abs(np.log(y) - k * (y - 1.0)) <= 1e-8 * np.log(y)
    small = float(log_root(np.full(4, k))[0])  # scipy's path for small arrays: as accurate near k = 1
    assert abs(np.log(small) - k * (small - 1.0)) <= 1e-8 * np.log(small)
    if k < 0.999:
        ref = -lambertw(-k * np.exp(-k), -1).real / k
        assert abs((y - 1.0) - (ref - 1.0)) <= 1e-9 * (ref - 1.0)


def test_min_bandwidth_meets_the_rate_exactly():
    from grl_aecnn.mec.channel import min_bandwidth_for_rate, shannon_rate

    rng = np.random.default_rng(0)
    a = 10 ** rng.uniform(3, 9, 500)  # P g / N0 in Hz
    rate = a / np.log(2) * rng.uniform(1e-6, 0.999, 500)
    w = min_bandwidth_for_rate(rate, a)
    np.testing.assert_allclose(shannon_rate(w, a, 1.0, 1.0), rate, rtol=1e-9)
    assert np.isinf(min_bandwidth_for_rate(np.array([a[0]]), np.array([a[0] * 0.5]))).all()
    assert min_bandwidth_for_rate(np.array([0.0]), np.array([a[0]]))[0] == 0.0


def test_a_task_without_server_work_is_served_without_a_compute_share():
    t = tasks_from(3, 3)
    t = EsTasks(t.symbols, t.payload, np.array([0.0, *t.server_flops[1:]]), t.slack_s, t.energy_left_j, t.gain, t.weight)
    alloc = solve(t, RES)
    ok, _, t_srv, _ = evaluate(alloc.beta, alloc.phi, alloc.power, t, RES)
    assert alloc.beta[0] > 0 and alloc.phi[0] == 0.0
    assert t_srv[0] == 0.0 and ok[0]
