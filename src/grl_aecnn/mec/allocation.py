"""Resource allocation on one edge server, given which tasks offload to it.

Task i (offloaded to ES m) gets a bandwidth share beta_i (beta_i B_m Hz), a compute share phi_i
(phi_i F_m a_m FLOP/s, a_m the available fraction) and a transmit power p_i <= P_max. It succeeds
iff t_dev,i + t_up,i + t_srv,i <= T_i and E_dev,i + p_i t_up,i <= E_max. The slot reward is a sum
of per-task weights w_i = (expected accuracy) + psi over the tasks that succeed (a failed task
scores -psi), so the allocator maximises sum_{i in S} w_i over the set S of tasks it can serve.

Solver (docs/system-model.md, "Allocation"): for a share beta the shortest feasible upload time is
h_i(beta) = max(t_P(beta), u_i / (beta B)) -- power-limited (p = P_max) or energy-limited (the
time-bandwidth product u_i solves u log2(1 + E~ g / (N0 u)) = D, closed form via Lambert W); both
are convex and decreasing in beta. The least compute share that still meets the deadline is
phi_i(beta) = c_i / (F (s_i - h_i(beta))), convex and decreasing. A set S is feasible iff
min { sum phi_i(beta_i) : sum beta_i <= 1 } <= 1, a separable convex problem; each phi_i is sampled
on a log grid of beta and replaced by its chords (which lie above the convex curve, so every answer
is truly feasible), and the minimum of the sum of piecewise-linear convex functions under one
budget is found exactly by taking segments in decreasing order of -d phi / d beta (a greedy that is
optimal for this separable structure). All subsets of up to `exact_max` tasks are checked at once
(one global segment order, masked per subset); above that, tasks enter in order of weight per
stand-alone resource footprint (the longest feasible prefix, then single additions). Leftover shares
are spread proportionally (more bandwidth or compute never hurts), and equal shares are kept when
they serve a heavier set.

Speed: `solve_many` solves all ESs of a slot in one batch (the simulator's call), checks subsets of
5 or more candidates heaviest first, and hands an ES with one task that the whole ES serves its
equal (whole) share at once; each of these returns exactly what the plain algorithm returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from grl_aecnn.mec.channel import min_bandwidth_for_rate

TOL = 1e-9  # relative tolerance of the deadline and energy checks (the energy-limited power meets E_max exactly)


@dataclass
class EsTasks:
    """Arrays over the tasks offloaded to one ES (all of length n)."""

    symbols: np.ndarray  # bool: analog option (payload in channel symbols) instead of bits
    payload: np.ndarray  # bits ("bytes" options, 8 x bytes) or channel symbols
    server_flops: np.ndarray
    slack_s: np.ndarray  # deadline minus device compute time
    energy_left_j: np.ndarray  # E_max minus device compute energy
    gain: np.ndarray  # linear channel power gain (estimate for decisions, true for outcomes)
    weight: np.ndarray  # w_i = expected accuracy + psi

    def __len__(self) -> int:
        return len(self.payload)

    def subset(self, idx) -> "EsTasks":
        return EsTasks(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def with_gain(self, gain: np.ndarray) -> "EsTasks":
        return EsTasks(self.symbols, self.payload, self.server_flops, self.slack_s, self.energy_left_j, gain,
                       self.weight)


@dataclass(frozen=True)
class EsResources:
    bandwidth_hz: float
    flops: float  # capacity x available fraction (estimate for decisions, true for outcomes)
    p_max_w: float
    n0_w_hz: float


def dof_needed(t: EsTasks, r: EsResources) -> np.ndarray:
    """u_i: the time-bandwidth product (Hz s) that the energy left allows; symbols: the symbol count."""
    a = np.maximum(t.energy_left_j, 0.0) * t.gain / r.n0_w_hz
    u = min_bandwidth_for_rate(t.payload, a)
    return np.where(t.symbols, t.payload, u)


def power_rule(beta: np.ndarray, u: np.ndarray, t: EsTasks, r: EsResources) -> np.ndarray:
    """p = min(P_max, E~ beta B / u): full power unless the energy budget binds."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _power_rule(beta, u, t, r)


def _power_rule(beta: np.ndarray, u: np.ndarray, t: EsTasks, r: EsResources) -> np.ndarray:
    p_e = np.where(np.isfinite(u) & (u > 0), np.maximum(t.energy_left_j, 0.0) * beta * r.bandwidth_hz / u, 0.0)
    return np.where(beta > 0, np.minimum(r.p_max_w, p_e), 0.0)


def upload_time(beta, power, t: EsTasks, r: EsResources) -> np.ndarray:
    """Seconds; inf without bandwidth or power. Symbols: one complex symbol per Hz per second."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _upload_time(beta, power, t, r)


def _upload_time(beta, power, t: EsTasks, r: EsResources) -> np.ndarray:
    w = np.asarray(beta, float) * r.bandwidth_hz
    has_w = w > 0
    w1 = np.where(has_w, w, 1.0)
    rate = w * np.log2(1.0 + power * t.gain / (r.n0_w_hz * w1))
    t_bits = np.where(rate > 0, t.payload / rate, np.inf)
    if not t.symbols.any():
        return t_bits
    t_sym = np.where(has_w, t.payload / w1, np.inf)
    return np.where(t.symbols, np.where(power > 0, t_sym, np.inf), t_bits)


def evaluate(beta, phi, power, t: EsTasks, r: EsResources):
    """(success bool, upload s, server s, transmit energy J) of each task under an allocation."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _evaluate(beta, phi, power, t, r)


def _evaluate(beta, phi, power, t: EsTasks, r: EsResources):
    t_up = _upload_time(beta, power, t, r)
    # a task with no server work needs no compute share (the solver gives it phi = 0)
    t_srv = np.where(t.server_flops <= 0, 0.0,
                     np.where(phi > 0, t.server_flops / (np.asarray(phi, float) * r.flops), np.inf))
    finite = np.isfinite(t_up)
    e_tx = np.where(finite, power * np.where(finite, t_up, 0.0), np.inf)
    ok = (t_up + t_srv <= t.slack_s * (1 + TOL) + 1e-12) & (e_tx <= t.energy_left_j * (1 + TOL) + 1e-15)
    ok &= (t.slack_s > 0) & (t.energy_left_j > 0)
    return ok, t_up, t_srv, e_tx


@dataclass
class Allocation:
    beta: np.ndarray
    phi: np.ndarray
    power: np.ndarray
    served: np.ndarray  # bool: tasks the solver expects to succeed (on the information it was given)


def equal_shares(t: EsTasks, r: EsResources) -> Allocation:
    """Every task of one ES gets beta = phi = 1 / (number of tasks): the baseline allocation."""
    return equal_shares_many(t, np.zeros(len(t), np.int64), r)


@lru_cache(maxsize=16)
def beta_grid(points: int, beta_min: float) -> tuple[np.ndarray, np.ndarray]:
    """The solver's log grid of bandwidth shares and its steps (read-only, computed once)."""
    grid = np.geomspace(beta_min, 1.0, points)
    step = np.diff(grid)
    grid.setflags(write=False)
    step.setflags(write=False)
    return grid, step


@lru_cache(maxsize=16)
def _all_masks(n: int) -> np.ndarray:
    """All 2^n subsets in itertools.product((False, True), repeat=n) order (first task most significant)."""
    rows = np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)[None, :]
    masks = (rows & 1).astype(bool)
    masks.setflags(write=False)
    return masks


def _phi_table(grid: np.ndarray, u: np.ndarray, t: EsTasks, r: EsResources, flops) -> np.ndarray:
    """phi_i(beta) on the grid for every task (rows), inf where the deadline cannot be met: the least
    upload time h(beta) = max(payload / rate at P_max, u / (beta B)) (analog options: the second term
    alone), then phi = c / (F (s - h)). The planner's `_min_upload_time_grid` is the same h, computed
    per MD-ES pair for speed. Runs under `solve_many`'s errstate."""
    w = grid * r.bandwidth_hz
    a = r.p_max_w * t.gain[:, None] / r.n0_w_hz
    rate_p = w * np.log2(1.0 + a / w)
    t_p = np.where(rate_p > 0, t.payload[:, None] / rate_p, np.inf)
    t_e = u[:, None] / w
    t_p = np.where(t.symbols[:, None], 0.0, t_p)
    room = t.slack_s[:, None] - np.maximum(t_p, t_e)
    phi = np.where(room > 0, t.server_flops[:, None] / (flops[:, None] * room), np.inf)
    phi[~((t.energy_left_j > 0) & np.isfinite(u))] = np.inf
    return phi


class _Segments:
    """Chords of the phi curves as segments, over `cols` columns (tasks): start point (beta0, phi0)
    per column, and the segments in decreasing order of marginal saving -d phi / d beta."""

    __slots__ = ("beta0", "phi0", "col", "dbeta", "dphi")

    def __init__(self, beta0, phi0, col, dbeta, dphi):
        self.beta0, self.phi0, self.col, self.dbeta, self.dphi = beta0, phi0, col, dbeta, dphi

    def min_phi(self, masks: np.ndarray, b0=None, p0=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For boolean masks (S, cols): min sum phi under sum beta <= 1 -> (sum phi, n_full segs,
        fraction). Segments of columns outside a mask count as empty positions (exact zeros, so the
        running sums are those of the mask's own segments). b0, p0: the masks' start sums, if known."""
        if b0 is None:
            m = masks.astype(float)
            b0, p0 = m @ self.beta0, m @ self.phi0
        inc = masks[:, self.col]
        db = np.where(inc, self.dbeta, 0.0)
        dp = np.where(inc, self.dphi, 0.0)
        n_seg = db.shape[1]
        s_idx = np.arange(len(masks))
        if not n_seg:
            return np.where(b0 <= 1.0, p0, np.inf), np.zeros(len(masks), np.int64), np.zeros(len(masks))
        cb = b0[:, None] + np.cumsum(db, axis=1)
        cp = p0[:, None] + np.cumsum(dp, axis=1)
        n_full = np.sum(cb <= 1.0, axis=1)  # cb is nondecreasing
        last = np.maximum(n_full - 1, 0)
        prev_b = np.where(n_full > 0, cb[s_idx, last], b0)
        prev_p = np.where(n_full > 0, cp[s_idx, last], p0)
        nxt = np.minimum(n_full, n_seg - 1)
        nb = db[s_idx, nxt]
        room = np.maximum(1.0 - prev_b, 0.0)
        frac = np.where((n_full < n_seg) & (nb > 0), np.minimum(room / np.where(nb > 0, nb, 1.0), 1.0), 0.0)
        prev_p = prev_p + frac * dp[s_idx, nxt]
        return np.where(b0 <= 1.0, prev_p, np.inf), n_full, frac

    def shares(self, masks: np.ndarray, seg_row: np.ndarray, n_full=None, frac=None) -> tuple[np.ndarray, np.ndarray]:
        """beta, phi (chord values) per column at the optimum of each of the feasible, pairwise
        disjoint masks (R, cols); seg_row: the row whose columns hold each segment; n_full, frac:
        `min_phi` of the masks, if known."""
        if n_full is None:
            _, n_full, frac = self.min_phi(masks)
        mask = masks.any(axis=0)
        beta, phi = self.beta0 * mask, self.phi0 * mask
        taken = mask[self.col]
        pos = np.arange(len(self.col))
        nf = n_full[seg_row]
        full = np.flatnonzero((pos < nf) & taken)
        np.add.at(beta, self.col[full], self.dbeta[full])
        np.add.at(phi, self.col[full], self.dphi[full])
        part = np.flatnonzero((pos == nf) & taken)
        fr = frac[seg_row[part]]
        part, fr = part[fr > 0], fr[fr > 0]
        if len(part):
            np.add.at(beta, self.col[part], fr * self.dbeta[part])
            np.add.at(phi, self.col[part], fr * self.dphi[part])
        return beta, phi


def solve(t: EsTasks, r: EsResources, exact_max: int = 8, grid_points: int | None = None,
          beta_min: float = 1e-5) -> Allocation:
    """Maximise the total weight of the tasks served on one ES (see the module docstring). The grid
    has 256 points up to `exact_max` tasks and 64 above (the greedy admission is itself approximate)."""
    return solve_many(t, np.zeros(len(t), np.int64), r, exact_max, grid_points, beta_min)


@np.errstate(divide="ignore", invalid="ignore")  # inf where a task gets no share (its outcome: failure)
def equal_shares_many(t: EsTasks, group: np.ndarray, r: EsResources, u: np.ndarray | None = None,
                      n_on: np.ndarray | None = None) -> Allocation:
    """`equal_shares` on every ES at once: beta = phi = 1 / (number of tasks on the task's ES)."""
    if n_on is None:
        group = np.asarray(group, np.int64)
        n_on = np.bincount(group)[group] if len(group) else np.zeros(0)
    beta = 1.0 / n_on
    phi = beta.copy()
    power = _power_rule(beta, dof_needed(t, r) if u is None else u, t, r)
    ok, *_ = _evaluate(beta, phi, power, t, r)
    return Allocation(beta, phi, power, ok)


@np.errstate(divide="ignore", invalid="ignore")  # inf where a task gets no share; the helpers below run under it
def solve_many(t: EsTasks, group: np.ndarray, r: EsResources, exact_max: int = 8, grid_points: int | None = None,
               beta_min: float = 1e-5) -> Allocation:
    """`solve` on every ES at once. `group[i]` (int >= 0) is the ES of task i; `r.flops` may be one
    value per task (its ES's capacity). The result on each ES is that of `solve` on its tasks alone:
    the per-ES problems are independent, and they are batched (one phi table, one segment sort, one
    subset enumeration over all ESs with <= exact_max candidates) so that a slot costs a fixed number
    of numpy calls instead of a number per ES.

    Shortcut (exact): an ES with a single task whose equal share (the whole ES) serves it, with a
    positive weight and server work, gets the whole ES -- what the solver returns there anyway (the
    task is either served alone, with both shares normalised to exactly 1, or equal shares win)."""
    n = len(t)
    if n == 0:
        z = np.zeros(0)
        return Allocation(z, z, z, np.zeros(0, bool))
    group = np.asarray(group, np.int64)
    counts = np.bincount(group)
    n_on = counts[group]
    u = dof_needed(t, r)
    eq = equal_shares_many(t, group, r, u, n_on)
    gen = ~((n_on == 1) & eq.served & (t.weight > 0) & (t.server_flops > 0))
    if not gen.any():
        return eq
    flops = np.broadcast_to(np.asarray(r.flops, float), (n,))
    if gen.all():
        beta, phi, power, ok = _solve_general(t, group, flops, r, u, eq, exact_max, grid_points, beta_min)
        return Allocation(beta, phi, power, ok)
    sel = np.flatnonzero(gen)
    sub = _solve_general(t.subset(sel), group[sel], flops[sel],
                         EsResources(r.bandwidth_hz, flops[sel], r.p_max_w, r.n0_w_hz), u[sel],
                         Allocation(*(x[sel] for x in (eq.beta, eq.phi, eq.power, eq.served))),
                         exact_max, grid_points, beta_min)
    out = Allocation(eq.beta.copy(), eq.phi.copy(), eq.power.copy(), eq.served.copy())
    for x, v in zip((out.beta, out.phi, out.power, out.served), sub):
        x[sel] = v
    return out


def _solve_general(t: EsTasks, group: np.ndarray, flops: np.ndarray, r: EsResources, u: np.ndarray, eq: Allocation,
                   exact_max: int, grid_points: int | None, beta_min: float):
    """(beta, phi, power, served) of `solve_many` without the shortcut; eq: the equal shares. Runs under
    `solve_many`'s errstate."""
    n = len(t)
    counts = np.bincount(group)
    n_on = counts[group]
    # --- phi tables and chord segments, per grid size (one size for all tasks of an ES) -----------------
    points = np.full(n, grid_points) if grid_points else np.where(n_on <= exact_max, 256, 64)
    alone = np.zeros(n, bool)
    beta0, phi0 = np.zeros(n), np.zeros(n)
    footprint = np.full(n, np.inf)
    seg_parts = []
    for g_pts in (points[:1] if points.min() == points.max() else np.unique(points)):
        sel = points == g_pts
        rows = np.arange(n) if sel.all() else np.flatnonzero(sel)
        tr = t if len(rows) == n else t.subset(rows)
        grid, dgrid = beta_grid(int(g_pts), beta_min)
        phi = _phi_table(grid, u[rows], tr, r, flops[rows])
        ok = phi <= 1.0
        al = ok.any(axis=1)
        start = np.where(al, ok.argmax(axis=1), len(grid) - 1)
        valid = (np.arange(len(grid) - 1)[None, :] >= start[:, None]) & al[:, None]
        d_phi = np.where(valid, np.diff(np.where(np.isfinite(phi), phi, 0.0), axis=1), 0.0)
        eff = -d_phi / dgrid
        keep = valid & (eff > 0)
        ti, tk = np.nonzero(keep)  # task-major, the flat order of the single-ES solver
        seg_parts.append((rows[ti], tk, eff[keep], dgrid[tk], d_phi[keep]))
        alone[rows] = al
        beta0[rows] = np.where(al, grid[start], 0.0)
        phi0[rows] = np.where(al, phi[np.arange(len(rows)), start], 0.0)
        if (counts[group[rows]] > exact_max).any():  # greedy admission needs the stand-alone footprint
            footprint[rows] = np.min(np.where(np.isfinite(phi), phi + grid, np.inf), axis=1)
    seg_task, seg_k, seg_eff, seg_db, seg_dp = (np.concatenate(x) for x in zip(*seg_parts)) if len(seg_parts) > 1 \
        else seg_parts[0]
    # one sort for all ESs: by ES, then decreasing saving, then segment, then task (lexsort is stable)
    order = np.lexsort((seg_k, -seg_eff, group[seg_task]))
    seg_task, seg_db, seg_dp = seg_task[order], seg_db[order], seg_dp[order]
    seg_group = group[seg_task]
    # --- which set each ES serves ------------------------------------------------------------------
    n_cand = np.bincount(group[alone], minlength=len(counts))
    serve = np.zeros(n, bool)
    beta, phi = np.zeros(n), np.zeros(n)
    exact = (n_cand >= 1) & (n_cand <= exact_max)
    by_group = np.argsort(group, kind="stable")
    first = np.cumsum(counts) - counts
    if exact.any():
        groups = np.flatnonzero(exact)
        cols = np.concatenate([by_group[first[e]:first[e] + counts[e]] for e in groups])  # tasks, grouped by ES
        col_of = np.full(n, -1)
        col_of[cols] = np.arange(len(cols))
        in_seg = col_of[seg_task] >= 0
        seg = _Segments(beta0[cols], phi0[cols], col_of[seg_task[in_seg]], seg_db[in_seg], seg_dp[in_seg])
        seg_gidx = np.searchsorted(groups, seg_group[in_seg])
        # all subsets of each ES's stand-alone-feasible tasks; the weights and start points are summed
        # per ES with the single-ES solver's shapes, so ties are broken on the very same numbers
        n_rows = 2 ** n_cand[groups]
        total_rows = int(n_rows.sum())
        b0, p0, value = (np.empty(total_rows) for _ in range(3))
        row0 = np.cumsum(n_rows) - n_rows
        col0 = np.cumsum(counts[groups]) - counts[groups]
        blocks = []
        for j, e in enumerate(groups):
            te = cols[col0[j]:col0[j] + counts[e]]
            me = np.zeros((n_rows[j], len(te)), bool)
            me[:, alone[te]] = _all_masks(int(n_cand[e]))
            rs, cs = slice(row0[j], row0[j] + n_rows[j]), slice(col0[j], col0[j] + len(te))
            mf = me.astype(float)
            b0[rs], p0[rs], value[rs] = mf @ beta0[te], mf @ phi0[te], me @ t.weight[te]
            blocks.append((rs, cs, me))
        tot, n_full, frac = np.full(total_rows, np.inf), np.zeros(total_rows, np.int64), np.zeros(total_rows)
        seg0 = np.searchsorted(seg_gidx, np.arange(len(groups)))  # each ES's first segment position
        large = n_cand[groups] >= _SEARCH_MIN
        small_rows = np.flatnonzero(np.repeat(~large, n_rows))
        if len(small_rows) and (large.any() or len(groups) > 1 and total_rows * len(seg.col) > 2 * int(
                n_rows @ np.bincount(seg_gidx, minlength=len(groups))) + 20_000):
            large[:] = True  # ES by ES: far fewer empty positions than one block over all ESs
        elif len(small_rows):  # one block-diagonal set of masks over all ESs
            masks = np.zeros((total_rows, len(cols)), bool)
            for rs, cs, me in blocks:
                masks[rs, cs] = me
            tot, n_full, frac = seg.min_phi(masks, b0, p0)
        seg_end = np.searchsorted(seg_gidx, np.arange(len(groups)), side="right")
        for j in np.flatnonzero(large):
            rs, cs, me = blocks[j]
            sj = slice(seg0[j], seg_end[j])  # seg_gidx is sorted: each ES's segments are contiguous
            local = _Segments(seg.beta0[cs], seg.phi0[cs], seg.col[sj] - col0[j], seg.dbeta[sj], seg.dphi[sj])
            rows = np.arange(rs.start, rs.stop)
            if n_cand[groups[j]] < _SEARCH_MIN:
                done = rows
            else:  # heaviest subsets first, until the heaviest feasible weight and all its ties are known
                done = _heaviest_first(local, me, b0[rs], p0[rs], value[rs]) + rs.start
            tot[done], n_full[done], frac[done] = local.min_phi(me[done - rs.start], b0[done], p0[done])
            n_full[done] += seg0[j]  # positions in the list of all ESs' segments
        feasible = tot <= 1.0
        value = np.where(feasible, value, -np.inf)
        # heaviest feasible set per ES; ties -> the one leaving most compute, then the first subset
        row_group = np.repeat(np.arange(len(groups)), n_rows)
        best = np.lexsort((tot, -value, row_group))
        best = best[np.searchsorted(row_group[best], np.arange(len(groups)))]
        chosen = np.zeros((len(groups), len(cols)), bool)  # each ES's chosen subset, in its own columns
        for j, ((rs, cs, me), row) in enumerate(zip(blocks, best)):
            chosen[j, cs] = me[row - rs.start] & feasible[row]
        b, p = seg.shares(chosen, seg_gidx, n_full[best], frac[best])
        beta[cols], phi[cols] = b, p
        serve[cols] = chosen.any(axis=0)
    for e in np.flatnonzero(n_cand > exact_max):  # greedy admission (approximate), ES by ES
        tasks = by_group[first[e]:first[e] + counts[e]]
        col_of = np.full(n, -1)
        col_of[tasks] = np.arange(len(tasks))
        in_seg = seg_group == e
        seg = _Segments(beta0[tasks], phi0[tasks], col_of[seg_task[in_seg]], seg_db[in_seg], seg_dp[in_seg])
        mask = _greedy_admission(seg, alone[tasks], footprint[tasks], t.weight[tasks])
        if mask.any():
            b, p = seg.shares(mask[None], np.zeros(len(seg.col), np.int64))
            beta[tasks], phi[tasks] = b, p
            serve[tasks] = mask
    # --- spread what is left; more bandwidth or compute never slows a task -------------------------
    sb = np.bincount(group, np.where(serve, beta, 0.0), minlength=len(counts))[group]
    sp = np.bincount(group, np.where(serve, phi, 0.0), minlength=len(counts))[group]
    beta = np.where(serve & (sb > 0), beta / sb, 0.0)
    phi = np.where(serve & (sp > 0), phi / sp, 0.0)
    power = _power_rule(beta, u, t, r)
    ok, *_ = _evaluate(beta, phi, power, t, r)
    # equal shares instead where they serve a heavier set
    use_eq = (np.bincount(group, eq.served * t.weight, minlength=len(counts))
              > np.bincount(group, ok * t.weight, minlength=len(counts)))[group]
    if use_eq.any():
        beta, phi = np.where(use_eq, eq.beta, beta), np.where(use_eq, eq.phi, phi)
        power, ok = np.where(use_eq, eq.power, power), np.where(use_eq, eq.served, ok)
    return beta, phi, power, ok


_SEARCH_MIN = 5  # from this many candidates on, subsets are checked heaviest first, not all at once


def _heaviest_first(seg: _Segments, masks: np.ndarray, b0: np.ndarray, p0: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Rows of `masks` whose min sum phi the subset choice needs: the subsets in decreasing weight
    (stable) up to the first feasible one, and every subset of that same weight (their sums of phi
    break the tie). Every lighter subset loses whatever its sums, so it is never computed. Rounds of
    growing size keep the number of numpy calls small."""
    order = np.argsort(-value, kind="stable")
    ranked = value[order]
    pos, chunk = 0, 8
    while True:
        rows = order[pos:pos + chunk]
        tot = seg.min_phi(masks[rows], b0[rows], p0[rows])[0]
        hit = np.flatnonzero(tot <= 1.0)
        if len(hit):
            v = ranked[pos + hit[0]]
            end = int(np.searchsorted(-ranked, -v, side="right"))  # ranked is nonincreasing
            return order[:max(end, pos + len(rows))]
        pos += len(rows)
        chunk *= 4


def _greedy_admission(seg: _Segments, alone: np.ndarray, footprint: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Tasks enter in order of weight per stand-alone footprint min(beta + phi): the longest feasible
    prefix, then the heaviest single additions that still fit."""
    n = len(alone)
    cand = np.flatnonzero(alone)
    mask = np.zeros(n, bool)
    order = cand[np.argsort(-(weight[cand] / footprint[cand]), kind="stable")]
    prefixes = np.zeros((len(order), n), bool)
    prefixes[:, order] = np.tri(len(order), dtype=bool)  # prefix j holds order[:j + 1]
    tot, _, _ = seg.min_phi(prefixes)
    ok = tot <= 1.0
    k = int(np.argmin(ok)) if not ok.all() else len(order)  # feasibility is monotone in the prefix
    if k:
        mask = prefixes[k - 1].copy()
    rest = list(order[k:])
    while rest:
        trial = np.repeat(mask[None], len(rest), axis=0)
        trial[np.arange(len(rest)), rest] = True
        tot, _, _ = seg.min_phi(trial)
        fits = np.flatnonzero(tot <= 1.0)
        if not len(fits):
            break
        pick = fits[np.argmax(weight[np.array(rest)[fits]])]
        mask[rest[pick]] = True
        rest.pop(pick)
    return mask
