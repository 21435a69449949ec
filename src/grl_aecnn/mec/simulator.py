"""The slotted MEC simulator: layout, mobility, channels, background load, tasks, decisions,
allocation and outcomes (docs/system-model.md). Environment randomness (layout, mobility,
shadowing, fading, CSI error, load, tasks) comes from separate streams spawned from one seed, so
every policy faces exactly the same realisations (common random numbers)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np

from grl_aecnn.errors import GrlAecnnError
from grl_aecnn.mec.allocation import EsResources, EsTasks, equal_shares_many, evaluate, solve_many
from grl_aecnn.mec.channel import fading_correlation, complex_normal, los_probability, noise_psd_w_hz, path_loss_db
from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.profile import OptionProfile

STREAMS = ("layout", "mobility", "shadowing", "fading", "csi", "load", "tasks")
LOG_FIELDS = ("slot", "md", "action", "es", "option", "sample", "deadline_ms", "t_device_ms", "t_upload_ms",
              "t_server_ms", "latency_ms", "energy_j", "bw_share", "cpu_share", "power_w", "gain_true_db",
              "gain_est_db", "on_time", "within_energy", "success", "correct", "reward")


class MecError(GrlAecnnError):
    """A simulator input (action, scenario, profile) is invalid."""


@dataclass(frozen=True)
class Observation:
    """What a decision maker sees at the start of a slot: estimates only, unless `perfect` (the
    oracle's view, `MecSimulator.observe(perfect=True)`, where the estimates are the true values)."""

    slot: int
    has_task: np.ndarray  # (N,) bool
    deadline_s: np.ndarray  # (N,), 0 without a task
    energy_budget_j: np.ndarray  # (N,)
    md_flops: np.ndarray  # (N,) FLOP/s
    md_j_per_flop: np.ndarray  # (N,)
    gain_est: np.ndarray  # (N, M) estimated linear channel gains
    avail_est: np.ndarray  # (M,) estimated available fraction of each ES
    md_xy: np.ndarray  # (N, 2) m
    es_xy: np.ndarray  # (M, 2) m
    es_bandwidth_hz: float
    es_capacity_flops: float
    p_max_w: float
    n0_w_hz: float
    failure_penalty: float
    option_kind: np.ndarray  # (O,) str
    option_payload_mean: np.ndarray  # (O,) bytes or symbols
    option_accuracy: np.ndarray  # (O,) mean correctness (symbols: best SNR)
    option_device_flops: np.ndarray
    option_server_flops: np.ndarray
    offload_options: np.ndarray  # profile indices of the offloading options (action order)
    local_option: int
    snr_grid_db: np.ndarray
    snr_accuracy: np.ndarray  # (n_symbols_options, n_snr)
    symbols_row: dict = field(default_factory=dict)  # profile option index -> row of snr_accuracy
    option_names: tuple = ()  # (O,) profile option names, e.g. "aecnn:L3" (policies filter options by codec)
    perfect: bool = False  # gain_est / avail_est hold the TRUE gains and availability

    @property
    def n_md(self) -> int:
        return len(self.has_task)

    @property
    def n_es(self) -> int:
        return len(self.avail_est)

    @property
    def n_actions(self) -> int:
        return 1 + self.n_es * len(self.offload_options)

    def decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(es index or -1, profile option index) per MD."""
        return decode_actions(actions, self.n_es, self.offload_options, self.local_option)


def decode_actions(actions, n_es: int, offload: np.ndarray, local: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actions, dtype=np.int64)
    k = len(offload)
    es = np.where(a == 0, -1, (a - 1) // max(k, 1))
    opt = np.where(a == 0, local, offload[np.clip((a - 1) % max(k, 1), 0, max(k - 1, 0))] if k else local)
    return es, opt


def snr_accuracy_lookup(snr_db: np.ndarray, grid_db: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table (..., n_snr) at the largest grid point <= snr; below the lowest point: 0 (outage)."""
    idx = np.searchsorted(grid_db, snr_db, side="right") - 1
    return np.where(idx >= 0, np.take_along_axis(table, np.maximum(idx, 0)[..., None], axis=-1)[..., 0]
                    if table.ndim == np.ndim(idx) + 1 else table[np.maximum(idx, 0)], 0.0)


class MecBatch:
    """`n_envs` independent copies of one scenario stepped in lockstep: every state array has a
    leading env axis, so a slot of all copies costs about the NumPy calls of one (the allocator
    solves the tasks of every (env, ES) pair as independent groups in one batch). The copies draw
    from the same seeded streams, each its own numbers: a batch is one seeded realisation, and a
    batch of one is exactly `MecSimulator` (same draws, same outcomes, same event log)."""

    def __init__(self, scenario: Scenario, profile: OptionProfile, seed: int = 0, allocator: str = "optimal",
                 n_envs: int = 1):
        if allocator not in ("optimal", "equal"):
            raise MecError(f"allocator must be 'optimal' or 'equal', got {allocator!r}")
        if n_envs < 1:
            raise MecError(f"n_envs must be >= 1, got {n_envs}")
        self.sc, self.profile, self.allocator, self.n_envs = scenario, profile, allocator, int(n_envs)
        self.offload = profile.offload_indices
        self.local = profile.local_index
        self.n_actions = 1 + scenario.n_es * len(self.offload)
        self.n0 = noise_psd_w_hz(scenario.channel)
        # Per-option facts of the profile, computed once (the profile is immutable).
        self.kinds = profile.kinds
        self.option_names = tuple(profile.names)
        self.payload_mean = profile.payload.mean(axis=1)
        self.accuracy = profile.accuracy()
        self.snr_accuracy = profile.snr_accuracy()
        self.device_flops = np.array([o.device_flops for o in profile.options], float)
        self.server_flops = np.array([o.server_flops for o in profile.options], float)
        sym = [i for i, o in enumerate(profile.options) if o.kind == "symbols"]
        self.symbols_row = {i: r for r, i in enumerate(sym)}
        self.option_row = np.array([self.symbols_row.get(i, 0) for i in range(profile.n_options)])
        self.is_symbols = self.kinds == "symbols"
        # action -> (ES or -1, profile option), for every action at once
        self._action_es, self._action_opt = decode_actions(np.arange(self.n_actions), scenario.n_es, self.offload,
                                                           self.local)
        # per-scenario constants of the slot loop (computed once: at N = 10 each NumPy call counts)
        eps2 = scenario.channel.csi_error_var
        self._csi_weights = (np.sqrt(1 - eps2), np.sqrt(eps2))  # estimate = w0 x channel + w1 x error
        self._energy_budget = np.full(scenario.n_md, scenario.device.energy_budget_j)
        cls = scenario.device.classes
        self._class_flops = np.array([c.cpu_hz * c.flops_per_cycle for c in cls])
        self._class_j_per_flop = np.array([c.kappa * c.cpu_hz**2 / c.flops_per_cycle for c in cls])
        for shared in (self.kinds, self.payload_mean, self.accuracy, self.snr_accuracy, self.device_flops,
                       self.server_flops):
            shared.setflags(write=False)  # observations share these arrays; nobody may change them
        self.reset(seed)

    # ---- state (every array: env first) --------------------------------------------------------
    def reset(self, seed: int) -> None:
        sc, ch = self.sc, self.sc.channel
        self.seed = int(seed)
        self.rng = dict(zip(STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(len(STREAMS)))))
        e, n, m, side = self.n_envs, sc.n_md, sc.n_es, sc.layout.area_m
        g = self.rng["layout"]
        if sc.layout.es_layout == "grid":
            cols = int(np.ceil(np.sqrt(m)))
            rows = int(np.ceil(m / cols))
            cells = [((c + 0.5) * side / cols, (r + 0.5) * side / rows) for r in range(rows) for c in range(cols)]
            self.es_xy = np.repeat(np.array(cells[:m], float)[None], e, axis=0)
        else:
            self.es_xy = g.uniform(0, side, (e, m, 2))
        self.md_xy = g.uniform(0, side, (e, n, 2))
        shares = np.array([c.share for c in sc.device.classes], float)
        self.md_class = g.choice(len(shares), size=(e, n), p=shares / shares.sum())
        self.md_flops = self._class_flops[self.md_class]
        self.md_j_per_flop = self._class_j_per_flop[self.md_class]
        self.los_u = g.random((e, n, m))
        self.los_phase = g.uniform(0, 2 * np.pi, (e, n, m))
        self.waypoint = g.uniform(0, side, (e, n, 2))
        self.speed = g.uniform(sc.mobility.speed_min_mps, sc.mobility.speed_max_mps, (e, n))
        if sc.mobility.model == "static":
            self.speed = np.zeros((e, n))
        self.shadow_z = self.rng["shadowing"].standard_normal((e, n, m))
        self.scatter = complex_normal(self.rng["fading"], (e, n, m))
        self.scatter_prev = self.scatter.copy()
        self.load_state = self.rng["load"].integers(len(sc.edge.load_available), size=(e, m))
        self._load_available = np.asarray(sc.edge.load_available, float)
        self.avail_prev = self._load_available[self.load_state]
        self._moving = sc.mobility.model == "random_waypoint"
        rho = fading_correlation(self.speed, sc.slot_s, ch)[..., None]
        self._fading_rho = (rho, np.sqrt(1 - rho**2))
        self._geometry()
        self.slot = 0
        self.records: list[dict[str, np.ndarray]] = []
        self._draw_slot()

    def _distances(self) -> np.ndarray:
        d = np.linalg.norm(self.md_xy[:, :, None, :] - self.es_xy[:, None, :, :], axis=-1)
        return np.maximum(d, self.sc.layout.min_distance_m)

    def _geometry(self) -> None:
        """Distance-dependent terms (LOS state, path loss, shadowing spread, Rician parts); they
        change only when MDs move, so static MDs compute them once per reset."""
        ch = self.sc.channel
        d = self._distances()
        self.los = self.los_u < los_probability(d)
        self._sigma = np.where(self.los, ch.shadowing_los_db, ch.shadowing_nlos_db)
        self._path_loss = path_loss_db(d, self.los, ch)
        k_lin = np.where(self.los, 10 ** (ch.rician_k_los_db / 10), 0.0)
        self._specular = np.sqrt(k_lin / (k_lin + 1)) * np.exp(1j * self.los_phase)
        self._scatter_amp = np.sqrt(1 / (k_lin + 1))
        self._large_lin = None  # 10^(large-scale dB / 10), cached while shadowing and geometry stay put

    def _small(self, scatter: np.ndarray) -> np.ndarray:
        return np.abs(self._specular + self._scatter_amp * scatter) ** 2

    def _draw_slot(self) -> None:
        """Large-scale gains, true/estimated gains, ES availability and tasks of the current slot."""
        sc, ch = self.sc, self.sc.channel
        if self._moving or self._large_lin is None:
            if self._moving:
                self._geometry()
            self._large_lin = 10 ** (-(self._path_loss + self._sigma * self.shadow_z) / 10)
        self.gain_true = self._large_lin * self._small(self.scatter)
        w_chan, w_err = self._csi_weights
        base = self.scatter_prev if ch.csi_outdated else self.scatter
        est = w_chan * base + w_err * complex_normal(self.rng["csi"], base.shape)
        self.gain_est = self._large_lin * self._small(est)
        self.avail_true = self._load_available[self.load_state]
        # clipped to [0.01, 1] (np.clip's bounds, without its slower wrapper)
        self.avail_est = np.minimum(np.maximum(self.avail_prev + sc.edge.load_estimate_std * self.rng[
            "load"].standard_normal(self.load_state.shape), 0.01), 1.0)
        t = self.rng["tasks"]
        shape = (self.n_envs, sc.n_md)
        self.has_task = t.random(shape) < sc.tasks.arrival_prob
        self.sample = t.integers(self.profile.n_samples, size=shape)
        lo, hi = sc.tasks.deadline_min_ms, sc.tasks.deadline_max_ms
        dl = t.uniform(lo, hi, shape) if sc.tasks.deadline_dist == "uniform" else np.full(shape, lo)
        self.deadline_s = np.where(self.has_task, dl / 1e3, 0.0)

    def _advance(self) -> None:
        sc, ch = self.sc, self.sc.channel
        if self._moving:
            step = self.speed * sc.slot_s
            delta = self.waypoint - self.md_xy
            dist = np.linalg.norm(delta, axis=-1)
            arrive = dist <= step
            self.md_xy = np.where(arrive[..., None], self.waypoint,
                                  self.md_xy + delta * (step / np.maximum(dist, 1e-12))[..., None])
            moved = np.minimum(dist, step)
            new_wp = self.rng["mobility"].uniform(0, sc.layout.area_m, self.waypoint.shape)
            new_speed = self.rng["mobility"].uniform(sc.mobility.speed_min_mps, sc.mobility.speed_max_mps,
                                                     self.speed.shape)
            self.waypoint = np.where(arrive[..., None], new_wp, self.waypoint)
            self.speed = np.where(arrive, new_speed, self.speed)
            rho_s = np.exp(-moved / ch.shadow_decorrelation_m)[..., None]
            self.shadow_z = rho_s * self.shadow_z + np.sqrt(1 - rho_s**2) * self.rng["shadowing"].standard_normal(
                self.shadow_z.shape)
            rho = fading_correlation(self.speed, sc.slot_s, ch)[..., None]
            self._fading_rho = (rho, np.sqrt(1 - rho**2))
        # static MDs: the shadowing correlation is exactly 1, so the shadowing stays (no draw needed;
        # that stream serves nothing else), and the fading correlation is fixed (set at reset)
        rho, rho_c = self._fading_rho
        self.scatter_prev = self.scatter
        self.scatter = rho * self.scatter + rho_c * complex_normal(self.rng["fading"], self.scatter.shape)
        n_states = len(self._load_available)
        g = self.rng["load"]
        shape = self.load_state.shape
        stay = g.random(shape) < sc.edge.load_stay_prob
        other = (self.load_state + 1 + g.integers(max(n_states - 1, 1), size=shape)) % n_states
        self.avail_prev = self.avail_true  # the availability of the slot that ends
        self.load_state = np.where(stay | (n_states == 1), self.load_state, other)
        self.slot += 1
        self._draw_slot()

    def observe(self, env: int = 0, perfect: bool = False) -> Observation:
        """Copy `env`'s view of the current slot. `perfect=True` is for the perfect-information
        oracle only: the true channel gains and ES availability replace the estimates."""
        self._check_env(env)
        p, sc = self.profile, self.sc
        gain, avail = (self.gain_true, self.avail_true) if perfect else (self.gain_est, self.avail_est)
        return Observation(
            slot=self.slot, has_task=self.has_task[env].copy(), deadline_s=self.deadline_s[env].copy(),
            energy_budget_j=self._energy_budget.copy(), md_flops=self.md_flops[env].copy(),
            md_j_per_flop=self.md_j_per_flop[env].copy(), gain_est=gain[env].copy(),
            avail_est=np.asarray(avail[env], float).copy(), md_xy=self.md_xy[env].copy(), es_xy=self.es_xy[env].copy(),
            es_bandwidth_hz=sc.edge.bandwidth_hz, es_capacity_flops=sc.edge.capacity_flops, p_max_w=sc.device.p_max_w,
            n0_w_hz=self.n0, failure_penalty=sc.failure_penalty, option_kind=self.kinds,
            option_payload_mean=self.payload_mean, option_accuracy=self.accuracy,
            option_device_flops=self.device_flops, option_server_flops=self.server_flops,
            offload_options=self.offload, local_option=self.local, snr_grid_db=p.snr_grid_db,
            snr_accuracy=self.snr_accuracy, symbols_row=dict(self.symbols_row), option_names=self.option_names,
            perfect=perfect)

    # ---- one slot ------------------------------------------------------------------------------
    def step(self, actions) -> dict:
        """Apply one decision per (env, MD), shape (n_envs, N) (ignored for MDs without a task).
        Returns per env the mean task reward, tasks and successes, and the slot's record (one row
        per task, env-major; "env" says whose)."""
        sc, p = self.sc, self.profile
        e_n, n, m = self.n_envs, sc.n_md, sc.n_es
        a = np.asarray(actions)
        if a.shape != (e_n, n) or a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= self.n_actions:
            raise MecError(f"actions must be ({e_n}, {n}) integers in [0, {self.n_actions}), got {a!r}")
        a = a.ravel()  # all arrays below: one row per (env, MD), env-major
        es, opt = self._action_es[a], self._action_opt[a]
        has_task, sample, deadline_s = self.has_task.ravel(), self.sample.ravel(), self.deadline_s.ravel()
        gain_est, gain_true = self.gain_est.reshape(-1, m), self.gain_true.reshape(-1, m)
        size = e_n * n
        dev_flops = self.device_flops[opt]
        t_dev = dev_flops / self.md_flops.ravel()
        e_dev = dev_flops * self.md_j_per_flop.ravel()
        e_max = sc.device.energy_budget_j
        t_up, t_srv, e_tx = np.zeros(size), np.zeros(size), np.zeros(size)
        beta, phi, power = np.zeros(size), np.zeros(size), np.zeros(size)
        ok_off = np.zeros(size, bool)
        correct = p.correct[opt, sample].astype(float)
        idx = (has_task & (es >= 0)).nonzero()[0]
        if len(idx):  # every (env, ES) at once: tasks grouped by (env, ES) (MD order within a group)
            group = es[idx] if e_n == 1 else idx // n * m + es[idx]
            order = np.argsort(group, kind="stable")
            idx, group = idx[order], group[order]
            g, o = es[idx], opt[idx]
            sym = self.is_symbols[o]
            any_sym = sym.any()
            payload = p.payload[o, sample[idx]].astype(float)
            g_est, g_true = gain_est[idx, g], gain_true[idx, g]
            exp_acc = self.accuracy[o]
            if any_sym:  # expected accuracy of analog options at the estimated SNR of an equal share
                exp_acc = exp_acc.copy()
                w_eq = sc.edge.bandwidth_hz / np.bincount(group)[group]
                snr_est = 10 * np.log10(sc.device.p_max_w * g_est[sym] / (self.n0 * w_eq[sym]))
                exp_acc[sym] = snr_accuracy_lookup(snr_est, p.snr_grid_db, self.snr_accuracy[self.option_row[o[sym]]])
            tasks = EsTasks(symbols=sym, payload=np.where(sym, payload, 8.0 * payload), server_flops=self.server_flops[o],
                            slack_s=deadline_s[idx] - t_dev[idx], energy_left_j=e_max - e_dev[idx], gain=g_est,
                            weight=exp_acc + sc.failure_penalty)
            cap = sc.edge.capacity_flops
            est = EsResources(sc.edge.bandwidth_hz, cap * self.avail_est.ravel()[group], sc.device.p_max_w, self.n0)
            alloc = (solve_many if self.allocator == "optimal" else equal_shares_many)(tasks, group, est)
            true = EsResources(sc.edge.bandwidth_hz, cap * self.avail_true.ravel()[group], sc.device.p_max_w, self.n0)
            ok, tu, ts, et = evaluate(alloc.beta, alloc.phi, alloc.power, tasks.with_gain(g_true), true)
            beta[idx], phi[idx], power[idx] = alloc.beta, alloc.phi, alloc.power
            t_up[idx], t_srv[idx], e_tx[idx], ok_off[idx] = tu, ts, et, ok
            if any_sym:  # analog options: correctness at the true SNR of the allocation
                s_idx = idx[sym]
                with np.errstate(divide="ignore"):
                    snr_db_true = 10 * np.log10(alloc.power[sym] * g_true[sym] / (
                        self.n0 * np.maximum(alloc.beta[sym], 1e-300) * sc.edge.bandwidth_hz))
                correct[s_idx] = snr_accuracy_lookup(
                    snr_db_true, p.snr_grid_db, p.snr_correct[self.option_row[o[sym]], :, sample[s_idx]].astype(float))
        local = es < 0
        latency = t_dev + t_up + t_srv
        energy = e_dev + e_tx
        on_time = latency <= deadline_s * (1 + 1e-9) + 1e-12
        within = energy <= e_max * (1 + 1e-9) + 1e-15
        success = np.where(local, on_time & within, ok_off) & has_task
        on_time &= has_task
        reward_i = np.where(success, correct, -sc.failure_penalty)
        tasks_idx = has_task.nonzero()[0]
        # every MD has a task (the default): whole arrays, no gathers (all are fresh arrays of this slot)
        pick = (lambda x: x) if len(tasks_idx) == size else (lambda x: x[tasks_idx])  # noqa: E731
        env_of, md = (np.zeros(len(tasks_idx), np.int64), tasks_idx) if e_n == 1 else np.divmod(tasks_idx, n)
        link = (tasks_idx, np.maximum(es, 0)[tasks_idx])
        g_db = 10 * np.log10(np.concatenate((gain_true[link], gain_est[link]))).reshape(2, -1)
        g_db[:, local[tasks_idx]] = np.nan
        success_t = pick(success)
        rec = {
            "slot": np.full(len(tasks_idx), self.slot), "env": env_of, "md": md, "action": a[tasks_idx], "es": pick(es),
            "option": pick(opt), "sample": sample[tasks_idx], "deadline_ms": 1e3 * pick(deadline_s),
            "t_device_ms": 1e3 * pick(t_dev), "t_upload_ms": 1e3 * pick(t_up), "t_server_ms": 1e3 * pick(t_srv),
            "latency_ms": 1e3 * pick(latency), "energy_j": pick(energy), "bw_share": pick(beta),
            "cpu_share": pick(phi), "power_w": pick(power), "gain_true_db": g_db[0], "gain_est_db": g_db[1],
            "on_time": pick(on_time), "within_energy": pick(within), "success": success_t,
            "correct": (pick(correct) > 0) & success_t, "reward": pick(reward_i),
        }
        self.records.append(rec)
        n_tasks = np.bincount(env_of, minlength=e_n)
        # per env the same sum as a lone simulator's (np.sum over its rows, which are contiguous)
        bounds = np.concatenate([[0], np.cumsum(n_tasks)])
        reward = np.array([rec["reward"][bounds[k]:bounds[k + 1]].sum() for k in range(e_n)]) / np.maximum(n_tasks, 1)
        n_success = np.bincount(env_of[success_t], minlength=e_n)
        self._advance()
        return {"reward": reward, "n_tasks": n_tasks, "n_success": n_success, "record": rec}

    # ---- results -------------------------------------------------------------------------------
    def _check_env(self, env: int | None) -> None:
        if env is not None and not 0 <= env < self.n_envs:
            raise MecError(f"env must be in [0, {self.n_envs}), got {env}")

    def _log_fields(self, env: int | None) -> tuple[str, ...]:
        """The log's columns: with "env" first when it pools several envs."""
        return ("env",) + LOG_FIELDS if env is None and self.n_envs > 1 else LOG_FIELDS

    def log_arrays(self, env: int | None = None) -> dict[str, np.ndarray]:
        """The per-task log of one env, or of all (None; then with an "env" column if there are several)."""
        self._check_env(env)
        fields = self._log_fields(env)
        if not self.records:
            return {k: np.zeros(0) for k in fields}
        cols = {k: np.concatenate([r[k] for r in self.records]) for k in fields}
        if env is None or self.n_envs == 1:
            return cols
        keep = np.concatenate([r["env"] for r in self.records]) == env
        return {k: v[keep] for k, v in cols.items()}

    def event_log_csv(self, env: int | None = None) -> str:
        """Per-task log; floats with 9 significant digits, so the same seed gives the same bytes."""
        cols = self.log_arrays(env)
        fields = self._log_fields(env)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(fields)
        names = self.profile.names

        def fmt(k, v):
            if k == "option":
                return names[int(v)]
            if isinstance(v, (bool, np.bool_)):
                return int(v)
            if isinstance(v, (np.integer, int)):
                return int(v)
            return "" if not np.isfinite(v) else f"{float(v):.9g}"

        for i in range(len(cols["slot"])):
            w.writerow([fmt(k, cols[k][i]) for k in fields])
        return buf.getvalue()

    def summary(self, env: int | None = None) -> dict:
        """Metrics of one env, or pooled over all (None: throughput per env, the mean of theirs)."""
        c = self.log_arrays(env)
        n_tasks = len(c["slot"])
        slots = self.slot
        envs = self.n_envs if env is None else 1
        finite = c["latency_ms"][np.isfinite(c["latency_ms"]) & c["success"].astype(bool)] if n_tasks else np.zeros(0)
        pct = lambda x, q: float(np.percentile(x, q)) if len(x) else None  # noqa: E731
        succ = c["success"].astype(bool) if n_tasks else np.zeros(0, bool)
        rew = c["reward"] if n_tasks else np.zeros(0)
        energy = c["energy_j"][np.isfinite(c["energy_j"])] if n_tasks else np.zeros(0)
        return {
            "slots": slots, "slot_s": self.sc.slot_s, "tasks": n_tasks,
            "avg_accuracy": float(np.mean(c["correct"])) if n_tasks else 0.0,
            "reliability": float(np.mean(succ)) if n_tasks else 0.0,
            "throughput_per_s": float(succ.sum() / (slots * self.sc.slot_s * envs)) if slots else 0.0,
            # over tasks with a finite energy: an offloaded task the ES did not serve is left out
            "energy_per_task_j": float(np.mean(energy)) if len(energy) else 0.0,
            "avg_reward": float(np.mean(rew)) if n_tasks else 0.0,
            "offload_fraction": float(np.mean(c["es"] >= 0)) if n_tasks else 0.0,
            "latency_ms": {"p50": pct(finite, 50), "p95": pct(finite, 95), "of": "successful tasks"},
            "latency_breakdown_ms": {
                part: {"p50": pct(c[f"t_{part}_ms"][succ], 50), "p95": pct(c[f"t_{part}_ms"][succ], 95)}
                for part in ("device", "upload", "server")},
        }


class MecSimulator:
    """One environment (docs/system-model.md): a `MecBatch` of one, seen without the env axis."""

    # state arrays of the batch that read here without their env axis
    PER_ENV = ("md_xy", "es_xy", "md_class", "md_flops", "md_j_per_flop", "los_u", "los_phase", "waypoint", "speed",
               "shadow_z", "scatter", "scatter_prev", "load_state", "avail_prev", "los", "gain_true", "gain_est",
               "avail_true", "avail_est", "has_task", "sample", "deadline_s")
    OWN = ("batch", "sc", "profile", "allocator", "n_actions")

    def __init__(self, scenario: Scenario, profile: OptionProfile, seed: int = 0, allocator: str = "optimal"):
        self.batch = MecBatch(scenario, profile, seed, allocator, n_envs=1)
        self.sc, self.profile, self.allocator, self.n_actions = scenario, profile, allocator, self.batch.n_actions

    def __getattr__(self, name: str):
        if name == "batch":  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        value = getattr(self.batch, name)
        return value[0] if name in self.PER_ENV else value

    def __setattr__(self, name: str, value) -> None:
        if name not in self.OWN:  # the state lives in the batch; a copy set here would silently diverge
            raise AttributeError(f"MecSimulator.{name} is the batch's state: set it on .batch (env axis first)")
        object.__setattr__(self, name, value)

    def reset(self, seed: int) -> Observation:
        self.batch.reset(seed)
        return self.observe()

    def observe(self, perfect: bool = False) -> Observation:
        """The decision maker's view of the current slot. `perfect=True` is for the perfect-information
        oracle only: the true channel gains and ES availability replace the estimates."""
        return self.batch.observe(0, perfect)

    def step(self, actions) -> dict:
        """Apply one decision per MD (ignored for MDs without a task); returns the slot's outcome."""
        a = np.asarray(actions)
        if a.shape != (self.sc.n_md,) or a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= self.n_actions:
            raise MecError(f"actions must be {self.sc.n_md} integers in [0, {self.n_actions}), got {a!r}")
        out = self.batch.step(a[None])
        rec = out["record"]
        n_tasks = int(out["n_tasks"][0])
        reward = float(rec["reward"].sum() / n_tasks) if n_tasks else 0.0
        return {"reward": reward, "n_tasks": n_tasks, "n_success": int(out["n_success"][0]), "record": rec}

    def log_arrays(self) -> dict[str, np.ndarray]:
        return self.batch.log_arrays()

    def event_log_csv(self) -> str:
        """Per-task log; floats with 9 significant digits, so the same seed gives the same bytes."""
        return self.batch.event_log_csv()

    def summary(self) -> dict:
        return self.batch.summary()
