"""The planner: expected slot reward of many joint decisions on the ESTIMATED state, in one batch.

It is the critic of the DROO-style loop (`policies/grl.py`) and the objective of exhaustive search
(`policies/search.py`). It reasons like the allocation solver (`mec.allocation`, docs/system-model.md
"Allocation") but is built for scoring thousands of joint actions per slot:

* Per (MD i, ES m, option o) it computes once per slot the solver's curve phi(beta): the least compute
  share that meets the deadline given a bandwidth share beta (`allocation._phi_table`'s h, same power
  rule, mean payload of the option, estimated gain and ES availability). The curve does not depend
  on the other tasks, so every candidate reuses it.
* Lagrangian form of the solver's feasibility test: a set S on one ES is feasible iff some price
  lambda of bandwidth (in compute shares) gives sum_S beta_i(lambda) <= 1 and sum_S phi_i(lambda) <= 1,
  where (beta_i, phi_i)(lambda) minimises phi_i + lambda beta_i on the grid. The pairs for a grid of
  lambda are also candidate-independent, so a candidate costs prefix sums only. Any lambda that passes
  gives a truly feasible allocation; a coarse lambda grid can only miss feasible sets (conservative).
* Admission: tasks enter in order of weight per stand-alone footprint min(beta + phi) (the solver's
  rule above `exact_max` tasks) and the longest feasible prefix is served; feasibility of a prefix is
  monotone because the sums only grow.
* Expected accuracy: the option's mean; analog ("symbols") options at the estimated SNR of an equal
  share of the ES's band, with the transmit power of the power rule. (The simulator's allocator
  weights them at P_max on that share, which is higher where the energy budget limits the power.)

Exhaustive search and the trained agents therefore optimise the same estimate; the simulator then
applies the exact solver with the sample's real payload and judges the outcome on the true state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from grl_aecnn.mec.allocation import EsResources, EsTasks, dof_needed, power_rule
from grl_aecnn.mec.simulator import MecError, Observation, snr_accuracy_lookup

BETA_GRID = np.geomspace(1e-4, 1.0, 32)
LAMBDA_GRID = np.geomspace(1e-3, 1e3, 24)  # bandwidth price in compute shares per bandwidth share
ACTION_FEATURES = 8  # width of `Plan.features`


def allowed_options(obs: Observation, prefixes: tuple[str, ...] | None) -> np.ndarray:
    """Positions j in `obs.offload_options` whose option name starts with one of `prefixes` (None: all)."""
    return allowed_among(tuple(obs.option_names[o] for o in obs.offload_options),
                         None if prefixes is None else tuple(prefixes))


@lru_cache(maxsize=256)
def allowed_among(names: tuple[str, ...], prefixes: tuple[str, ...] | None) -> np.ndarray:
    """Positions in `names` that start with one of `prefixes` (None: all); computed once per option set
    (every slot of a run asks the same; read-only result)."""
    keep = np.array([prefixes is None or n.startswith(prefixes) for n in names], bool)
    if not keep.any():
        raise MecError(f"the profile has no offloading option starting with {list(prefixes)}; options: {list(names)}")
    out = np.flatnonzero(keep)
    out.setflags(write=False)
    return out


@dataclass
class Evaluation:
    reward: np.ndarray  # (C,) expected slot reward of each candidate
    value: np.ndarray  # (C, N) expected reward of each MD's task (0 without a task)
    served: np.ndarray  # (C, N) bool: an offloaded task the planner expects its ES to serve
    load: np.ndarray  # (C, N) the least max(sum beta, sum phi) over lambda on the MD's ES (0 when local)


class Plan:
    """One slot's candidate-independent tables. Actions are the simulator's (0 = local, 1 + m K + j)
    restricted to the offloading options `cols` (positions in `obs.offload_options`)."""

    def __init__(self, obs: Observation, cols: np.ndarray, headroom: float = 0.0):
        """`headroom`: the fraction of each ES's bandwidth and compute kept free when tasks are admitted
        (sums of shares <= 1 - headroom): a margin against CSI error and ES load changes, which the
        ES's allocator then spreads over the admitted tasks."""
        if not 0.0 <= headroom < 1.0:
            raise MecError(f"headroom must be in [0, 1), got {headroom}")
        self.obs, self.cols, self.limit = obs, np.asarray(cols), 1.0 - headroom
        n, m, k_all = obs.n_md, obs.n_es, len(obs.offload_options)
        ka = len(self.cols)
        self.n_md, self.n_es, self.k = n, m, ka
        # agent action a (0 = local, 1 + m ka + q) -> simulator action
        self.sim_action = np.concatenate([[0], (1 + np.arange(m)[:, None] * k_all + self.cols[None, :]).ravel()])
        self.n_actions = 1 + m * ka
        psi = obs.failure_penalty
        opts = obs.offload_options[self.cols]
        # local
        loc = obs.local_option
        t_loc = obs.option_device_flops[loc] / obs.md_flops
        ok_loc = (t_loc <= obs.deadline_s) & (obs.option_device_flops[loc] * obs.md_j_per_flop <= obs.energy_budget_j)
        self.local_value = np.where(obs.has_task, np.where(ok_loc, obs.option_accuracy[loc], -psi), 0.0)
        # rows (i, m, q) flattened md-major, matching the action order
        ii, mm, pair, q = _row_index(n, m, ka)
        o = opts[q]
        sym = (obs.option_kind[opts] == "symbols")[q]
        t_dev = obs.option_device_flops[o] / obs.md_flops[ii]
        e_dev = obs.option_device_flops[o] * obs.md_j_per_flop[ii]
        t = EsTasks(sym, obs.option_payload_mean[o] * np.where(sym, 1.0, 8.0), obs.option_server_flops[o],
                    obs.deadline_s[ii] - t_dev, obs.energy_budget_j[ii] - e_dev, obs.gain_est[ii, mm], np.ones(len(o)))
        # the upload time and dof_needed use only the radio fields; compute enters through flops below
        res = EsResources(obs.es_bandwidth_hz, 1.0, obs.p_max_w, obs.n0_w_hz)
        # only rows that can still make it (a task, slack and energy left) get the curves: the others
        # are infeasible whatever the share
        live = np.flatnonzero(obs.has_task[ii] & (t.slack_s > 0) & (t.energy_left_j > 0))
        tl = t.subset(live)
        u = np.where(sym, t.payload, np.inf)  # analog options: the symbol count (dof_needed's rule)
        u[live] = dof_needed(tl, res)
        h = _min_upload_time_grid(obs, tl, u[live], pair[live])
        flops = obs.es_capacity_flops * obs.avail_est[mm[live]]
        with np.errstate(divide="ignore", invalid="ignore"):
            room = tl.slack_s[:, None] - h
            phi = np.where(room > 0, tl.server_flops[:, None] / (flops[:, None] * room), np.inf)
        phi[~np.isfinite(u[live])] = np.inf
        phi[(phi > self.limit) | (BETA_GRID > self.limit)] = np.inf
        fits = np.isfinite(phi).any(axis=1)
        alone = np.zeros(len(o), bool)
        alone[live[fits]] = True
        self.alone = alone
        # phi on the grid per row that fits alone; its priced (beta, phi) pairs are computed on demand
        # (`_priced`) for the rows that candidates use, a few dozen of hundreds
        self._grid_row = np.full(len(o), -1)
        self._grid_row[live[fits]] = np.arange(int(fits.sum()))
        self._phi_grid = phi[fits]
        # one extra row of zeros (index len(o)): what a task that is not admitted adds to the sums
        self._beta = np.full((len(o) + 1, len(LAMBDA_GRID)), np.inf)
        self._phi = np.full((len(o) + 1, len(LAMBDA_GRID)), np.inf)
        self._beta[-1] = self._phi[-1] = 0.0
        self._priced_done = ~alone
        footprint = np.full(len(o), np.inf)
        footprint[alone] = np.min(self._phi_grid + BETA_GRID, axis=1)
        # expected accuracy; symbols: at an equal share of the band among n tasks on the ES (n = 1..N)
        acc = np.repeat(obs.option_accuracy[o][:, None], n, axis=1)
        if sym.any():
            share = 1.0 / np.arange(1, n + 1)
            ts = EsTasks(*(getattr(t, f)[sym] for f in ("symbols", "payload", "server_flops", "slack_s",
                                                           "energy_left_j", "gain", "weight")))
            beta = np.broadcast_to(share, (int(sym.sum()), n))
            power = power_rule(beta, u[sym][:, None], _columns(ts), res)
            snr_db = 10 * np.log10(np.maximum(power * ts.gain[:, None] / (obs.n0_w_hz * beta * obs.es_bandwidth_hz), 1e-30))
            rows = np.array([obs.symbols_row[int(x)] for x in o[sym]])
            acc[sym] = snr_accuracy_lookup(snr_db, obs.snr_grid_db, obs.snr_accuracy[rows][:, None, :].repeat(n, 1))
        self.accuracy = acc  # (R, N)
        self.priority = np.where(alone, (acc[:, 0] + psi) / footprint, -np.inf)
        # each action's expected reward if the MD were alone on its ES (what greedy maximises)
        self.standalone = np.concatenate([self.local_value[:, None],
                                          np.where(alone, acc[:, 0], -psi).reshape(n, m * ka)], axis=1)
        self.standalone[~obs.has_task] = 0.0
        # per-action features for the learned networks (see ACTION_FEATURES)
        f = np.zeros((n, self.n_actions, ACTION_FEATURES), np.float32)
        slack_loc = np.where(obs.has_task, (obs.deadline_s - t_loc) / np.maximum(obs.deadline_s, 1e-9), 0.0)
        f[:, 0, 1] = self.local_value != -psi
        f[:, 0, 3] = self.local_value
        f[:, 0, 5] = slack_loc
        off = np.zeros((len(o), ACTION_FEATURES), np.float32)
        off[:, 0] = 1.0
        off[:, 1] = alone
        off[:, 2] = np.where(alone, np.minimum(footprint, 2.0), 2.0)
        off[:, 3] = self.standalone[:, 1:].ravel()
        off[:, 4] = np.log10(t.payload) / 5.0
        off[:, 5] = np.clip(t.slack_s / np.maximum(obs.deadline_s[ii], 1e-9), -1.0, 1.0)
        off[:, 6] = sym
        off[:, 7] = t.server_flops / 1e8
        f[:, 1:, :] = off.reshape(n, m * ka, ACTION_FEATURES)
        f[~obs.has_task] = 0.0
        self.features = f
        self.mask = np.ones((n, self.n_actions), bool)
        self.mask[~obs.has_task, 1:] = False  # without a task the choice does not matter: keep it local

    def _priced(self, rows: np.ndarray) -> None:
        """Fill the (beta, phi) pairs per bandwidth price of `rows` (those not done yet)."""
        todo = np.unique(rows[~self._priced_done[rows]])
        if len(todo):
            phi = self._phi_grid[self._grid_row[todo]]
            best = _argmin_priced(phi)
            self._beta[todo] = BETA_GRID[best]
            self._phi[todo] = np.take_along_axis(phi, best, axis=1)
            self._priced_done[todo] = True

    def evaluate(self, actions: np.ndarray) -> Evaluation:
        """Score agent actions of shape (C, N)."""
        a = np.asarray(actions, np.int64)
        c, n = a.shape
        obs, m, psi = self.obs, self.n_es, self.obs.failure_penalty
        has = obs.has_task[None, :]
        off = (a > 0) & has
        row = np.arange(n)[None, :] * (m * self.k) + np.maximum(a - 1, 0)  # (C, N)
        es = np.where(off, (a - 1) // self.k, -1)
        alone = off & self.alone[row]
        self._priced(row[alone])
        # admission per ES in priority order: sort by (ES, -priority), the tasks that cannot be served
        # alone last; then running sums restart at each ES's first task
        group = np.where(alone, es, m)
        order = np.lexsort((-np.where(alone, self.priority[row], -np.inf), group), axis=1)
        flat = order + (np.arange(c) * n)[:, None]  # sorted positions in the raveled (C, N) arrays
        s_alone, s_group = alone.ravel()[flat], group.ravel()[flat]
        pick = np.where(s_alone, row.ravel()[flat], len(self._beta) - 1)
        # prefix sums with a leading zero, so the sum from a group's first task is one subtraction
        sb = np.zeros((c, n + 1, len(LAMBDA_GRID)))
        sp = np.zeros_like(sb)
        np.cumsum(self._beta[pick], axis=1, out=sb[:, 1:])
        np.cumsum(self._phi[pick], axis=1, out=sp[:, 1:])
        first = np.ones((c, n), bool)
        first[:, 1:] = s_group[:, 1:] != s_group[:, :-1]
        start = np.maximum.accumulate(np.where(first, np.arange(n), 0), axis=1)  # first position of the group
        cand = np.arange(c)[:, None]
        worst = np.min(np.maximum(sb[:, 1:] - sb[cand, start], sp[:, 1:] - sp[cand, start]), axis=2)  # (C, N)
        s_served = s_alone & (worst <= self.limit)  # the group's prefix up to this task fits
        served = np.zeros(c * n, bool)
        served[flat.ravel()] = s_served.ravel()
        served = served.reshape(c, n)
        # the load of each ES after admission: the last served prefix's worst sum
        onehot = s_group[:, :, None] == np.arange(m)
        last = np.where(s_served[:, :, None] & onehot, worst[:, :, None], 0.0).max(axis=1)  # (C, M)
        es0 = np.maximum(es, 0)
        load = np.where(off, last[cand, es0], 0.0)
        count = np.bincount((cand * (m + 1) + np.where(off, es, m)).ravel(), minlength=c * (m + 1))  # tasks per ES
        n_on = count.reshape(c, m + 1)[cand, es0]
        acc = self.accuracy[row, np.maximum(n_on - 1, 0)]
        value = np.where(off, np.where(served, acc, -psi), self.local_value[None, :])
        value = np.where(has, value, 0.0)
        n_tasks = max(int(obs.has_task.sum()), 1)
        return Evaluation(value.sum(axis=1) / n_tasks, value, served, load)


def _argmin_priced(phi: np.ndarray) -> np.ndarray:
    """argmin_k phi[r, k] + lambda_l BETA_GRID[k] for every row r and price l, in O(R G) instead of
    O(R G L): phi is convex in beta, so along the grid the saving per unit of bandwidth of the next
    step, -d phi / d beta, decreases, and the minimiser for price lambda is the number of steps whose
    saving exceeds lambda. Infinite entries before the first finite one (shares too small to make the
    deadline) always step right; those after the last finite one (shares above the planner's limit)
    never step."""
    finite = np.isfinite(phi)
    leading = ~np.logical_or.accumulate(finite, axis=1)
    with np.errstate(invalid="ignore"):
        saving = -np.diff(phi, axis=1) / np.diff(BETA_GRID)
    saving = np.where(leading[:, :-1], np.inf, np.where(finite[:, :-1] & finite[:, 1:], saving, -np.inf))
    rows, segs = phi.shape[0], phi.shape[1] - 1
    n_lambda = len(LAMBDA_GRID)
    bins = np.searchsorted(LAMBDA_GRID, saving.ravel(), side="left")  # saving > LAMBDA_GRID[l] iff bins > l
    hist = np.bincount(np.repeat(np.arange(rows), segs) * (n_lambda + 1) + bins,
                       minlength=rows * (n_lambda + 1)).reshape(rows, n_lambda + 1)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # above[:, l] = #segments with bin >= l
    return np.minimum(above[:, 1:], segs)


@lru_cache(maxsize=64)
def _row_index(n: int, m: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(MD, ES, MD-ES pair, option position) of each (i, m, q) row, md-major (read-only, computed once
    per shape)."""
    md = np.repeat(np.arange(n), m * k)
    es = np.tile(np.repeat(np.arange(m), k), n)
    out = (md, es, md * m + es, np.tile(np.arange(k), n * m))
    for x in out:
        x.setflags(write=False)
    return out


def _min_upload_time_grid(obs: Observation, t: EsTasks, u: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """The allocator's least upload time h (`allocation._phi_table`) on BETA_GRID for every row,
    max(payload / rate_P(beta), u / (beta B)):
    the full-power rate depends on the MD-ES pair only, so it is computed once per pair, not per option."""
    w = BETA_GRID * obs.es_bandwidth_hz
    a = obs.p_max_w * obs.gain_est.reshape(-1) / obs.n0_w_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        per_bit = 1.0 / (w * np.log2(1.0 + a[:, None] / w))  # (N M, G) seconds per bit; inf without rate
        t_p = t.payload[:, None] * per_bit[pair]
        t_p[t.symbols] = 0.0  # analog options: the symbol-count term alone (u / w)
        return np.maximum(t_p, u[:, None] / w)


def _columns(t: EsTasks) -> EsTasks:
    """The same tasks with every array as a column, to broadcast against (n, K) shares."""
    return EsTasks(*(getattr(t, f)[:, None] for f in t.__dataclass_fields__))
