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
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

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
        p_e = np.where(np.isfinite(u) & (u > 0), np.maximum(t.energy_left_j, 0.0) * beta * r.bandwidth_hz / u, 0.0)
    return np.where(beta > 0, np.minimum(r.p_max_w, p_e), 0.0)


def upload_time(beta, power, t: EsTasks, r: EsResources) -> np.ndarray:
    """Seconds; inf without bandwidth or power. Symbols: one complex symbol per Hz per second."""
    w = np.asarray(beta, float) * r.bandwidth_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = w * np.log2(1.0 + power * t.gain / (r.n0_w_hz * np.where(w > 0, w, 1.0)))
        t_bits = np.where(rate > 0, t.payload / rate, np.inf)
        t_sym = np.where(w > 0, t.payload / np.where(w > 0, w, 1.0), np.inf)
    return np.where(t.symbols, np.where(power > 0, t_sym, np.inf), t_bits)


def evaluate(beta, phi, power, t: EsTasks, r: EsResources):
    """(success bool, upload s, server s, transmit energy J) of each task under an allocation."""
    t_up = upload_time(beta, power, t, r)
    with np.errstate(divide="ignore"):
        t_srv = np.where(phi > 0, t.server_flops / (np.asarray(phi, float) * r.flops), np.inf)
    e_tx = np.where(np.isfinite(t_up), power * np.where(np.isfinite(t_up), t_up, 0.0), np.inf)
    ok = (t_up + t_srv <= t.slack_s * (1 + TOL) + 1e-12) & (e_tx <= t.energy_left_j * (1 + TOL) + 1e-15)
    ok &= (t.slack_s > 0) & (t.energy_left_j > 0)
    return ok, t_up, t_srv, e_tx


def min_upload_time(beta: np.ndarray, u: np.ndarray, t: EsTasks, r: EsResources) -> np.ndarray:
    """h_i(beta) for beta of shape (n,) or (n, K)."""
    b = np.asarray(beta, float)
    if b.ndim == 2:
        cols = lambda x: x[:, None]  # noqa: E731
    else:
        cols = lambda x: x  # noqa: E731
    w = b * r.bandwidth_hz
    a = r.p_max_w * cols(t.gain) / r.n0_w_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_p = w * np.log2(1.0 + a / w)
        t_p = np.where(rate_p > 0, cols(t.payload) / rate_p, np.inf)
        t_e = cols(u) / w
    t_p = np.where(cols(t.symbols), 0.0, t_p)
    return np.maximum(t_p, t_e)


@dataclass
class Allocation:
    beta: np.ndarray
    phi: np.ndarray
    power: np.ndarray
    served: np.ndarray  # bool: tasks the solver expects to succeed (on the information it was given)


def equal_shares(t: EsTasks, r: EsResources) -> Allocation:
    n = len(t)
    beta = np.full(n, 1.0 / max(n, 1))
    phi = beta.copy()
    power = power_rule(beta, dof_needed(t, r), t, r)
    ok, *_ = evaluate(beta, phi, power, t, r)
    return Allocation(beta, phi, power, ok)


class _Curves:
    """Piecewise-linear upper approximations of phi_i(beta) on a shared log grid of beta."""

    def __init__(self, t: EsTasks, r: EsResources, grid_points: int, beta_min: float):
        self.grid = np.geomspace(beta_min, 1.0, grid_points)
        self.u = dof_needed(t, r)
        h = min_upload_time(np.broadcast_to(self.grid, (len(t), grid_points)), self.u, t, r)
        room = t.slack_s[:, None] - h
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(room > 0, t.server_flops[:, None] / (r.flops * room), np.inf)
        phi[~((t.energy_left_j > 0) & np.isfinite(self.u))] = np.inf
        self.phi = phi
        ok = phi <= 1.0
        self.alone = ok.any(axis=1)  # feasible on its own
        self.start = np.where(self.alone, ok.argmax(axis=1), grid_points - 1)
        n, k = phi.shape
        # segments k -> k+1 for k >= start
        kk = np.arange(k - 1)
        valid = (kk[None, :] >= self.start[:, None]) & self.alone[:, None]
        d_beta = np.broadcast_to(np.diff(self.grid), (n, k - 1))
        with np.errstate(invalid="ignore"):
            d_phi = np.where(valid, np.diff(np.where(np.isfinite(phi), phi, 0.0), axis=1), 0.0)
        eff = -d_phi / d_beta
        task_of = np.repeat(np.arange(n), k - 1)
        seg_k = np.tile(kk, n)
        eff_flat, valid_flat = eff.ravel(), valid.ravel()
        order = np.lexsort((seg_k, -eff_flat))
        order = order[valid_flat[order] & (eff_flat[order] > 0)]
        self.seg_task = task_of[order]
        self.seg_k = seg_k[order]
        self.seg_dbeta = d_beta.ravel()[order]
        self.seg_dphi = d_phi.ravel()[order]
        self.beta0 = np.where(self.alone, self.grid[self.start], 0.0)
        self.phi0 = np.where(self.alone, phi[np.arange(n), self.start], 0.0)

    def min_phi(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For boolean masks (S, n): min sum phi under sum beta <= 1 -> (sum phi, n_full segs, fraction)."""
        m = masks.astype(float)
        b0, p0 = m @ self.beta0, m @ self.phi0
        inc = masks[:, self.seg_task]
        db = np.where(inc, self.seg_dbeta, 0.0)
        dp = np.where(inc, self.seg_dphi, 0.0)
        cb = b0[:, None] + np.cumsum(db, axis=1)
        cp = p0[:, None] + np.cumsum(dp, axis=1)
        n_full = np.sum(cb <= 1.0, axis=1)  # cb is nondecreasing
        s_idx = np.arange(len(masks))
        prev_b = np.where(n_full > 0, cb[s_idx, np.maximum(n_full - 1, 0)], b0) if cb.shape[1] else b0
        prev_p = np.where(n_full > 0, cp[s_idx, np.maximum(n_full - 1, 0)], p0) if cp.shape[1] else p0
        frac = np.zeros(len(masks))
        if cb.shape[1]:
            nxt = np.minimum(n_full, cb.shape[1] - 1)
            has_next = n_full < cb.shape[1]
            room = np.maximum(1.0 - prev_b, 0.0)
            nb = db[s_idx, nxt]
            frac = np.where(has_next & (nb > 0), np.minimum(room / np.where(nb > 0, nb, 1.0), 1.0), 0.0)
            prev_p = prev_p + frac * dp[s_idx, nxt]
        feasible_b = b0 <= 1.0
        return np.where(feasible_b, prev_p, np.inf), n_full, frac

    def shares(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """beta_i, phi_i (chord values) at the optimum of one feasible mask."""
        _, n_full, frac = self.min_phi(mask[None])
        beta, phi = self.beta0 * mask, self.phi0 * mask
        taken = mask[self.seg_task]
        pos = np.arange(len(self.seg_task))
        full = pos[(pos < n_full[0]) & taken]
        part = pos[(pos == n_full[0]) & taken]
        np.add.at(beta, self.seg_task[full], self.seg_dbeta[full])
        np.add.at(phi, self.seg_task[full], self.seg_dphi[full])
        if len(part) and frac[0] > 0:
            np.add.at(beta, self.seg_task[part], frac[0] * self.seg_dbeta[part])
            np.add.at(phi, self.seg_task[part], frac[0] * self.seg_dphi[part])
        return beta, phi


def _all_masks(n: int) -> np.ndarray:
    return np.array(list(product((False, True), repeat=n)), dtype=bool).reshape(-1, n)


def solve(t: EsTasks, r: EsResources, exact_max: int = 8, grid_points: int | None = None,
          beta_min: float = 1e-5) -> Allocation:
    """Maximise the total weight of the tasks served on one ES (see the module docstring). The grid
    has 256 points up to `exact_max` tasks and 64 above (the greedy admission is itself approximate)."""
    n = len(t)
    grid_points = grid_points or (256 if n <= exact_max else 64)
    if n == 0:
        z = np.zeros(0)
        return Allocation(z, z, z, np.zeros(0, bool))
    curves = _Curves(t, r, grid_points, beta_min)
    cand = np.flatnonzero(curves.alone)
    mask = np.zeros(n, bool)
    if len(cand) and len(cand) <= exact_max:
        sub = _all_masks(len(cand))
        masks = np.zeros((len(sub), n), bool)
        masks[:, cand] = sub
        tot, _, _ = curves.min_phi(masks)
        ok = tot <= 1.0
        value = np.where(ok, masks @ t.weight, -np.inf)
        # heaviest feasible set; ties -> the one leaving most compute
        best = np.lexsort((tot, -value))[0]
        mask = masks[best] if ok[best] else mask
    elif len(cand):
        footprint = np.min(np.where(np.isfinite(curves.phi), curves.phi + curves.grid, np.inf), axis=1)
        order = cand[np.argsort(-(t.weight[cand] / footprint[cand]), kind="stable")]
        prefixes = np.zeros((len(order), n), bool)
        for j in range(len(order)):
            prefixes[j:, order[j]] = True
        tot, _, _ = curves.min_phi(prefixes)
        ok = tot <= 1.0
        k = int(np.argmin(ok)) if not ok.all() else len(order)  # feasibility is monotone in the prefix
        if k:
            mask = prefixes[k - 1].copy()
        rest = list(order[k:])
        while rest:
            trial = np.repeat(mask[None], len(rest), axis=0)
            trial[np.arange(len(rest)), rest] = True
            tot, _, _ = curves.min_phi(trial)
            fits = np.flatnonzero(tot <= 1.0)
            if not len(fits):
                break
            pick = fits[np.argmax(t.weight[np.array(rest)[fits]])]
            mask[rest[pick]] = True
            rest.pop(pick)
    beta, phi = curves.shares(mask) if mask.any() else (np.zeros(n), np.zeros(n))
    if mask.any():  # spread what is left; more bandwidth or compute never slows a task
        beta = np.where(mask, beta / beta[mask].sum() if beta[mask].sum() > 0 else 0.0, 0.0)
        phi = np.where(mask, phi / phi[mask].sum() if phi[mask].sum() > 0 else 0.0, 0.0)
    power = power_rule(beta, curves.u, t, r)
    ok, *_ = evaluate(beta, phi, power, t, r)
    best = Allocation(beta, phi, power, ok)
    eq = equal_shares(t, r)
    if eq.served @ t.weight > ok @ t.weight:
        return eq
    return best
