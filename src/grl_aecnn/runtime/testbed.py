"""`grl-aecnn testbed`: M edge-server processes, N device processes and this controller, on one
machine. Each slot the controller steps a MecSimulator (same scenario, profile and seed as
`grl-aecnn simulate`), so the policy sees exactly the observations of the simulation; the
simulator's allocation gives each offloading task its uplink rate (from the true channel gain,
bandwidth share and power), which the link is shaped to; each server's compute is throttled to the
slot's available fraction. The devices then do the work for real, and the real outcomes are logged
in the simulator's columns, next to the simulated ones."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np

from grl_aecnn.config import dump_config, load_config
from grl_aecnn.errors import GrlAecnnError
from grl_aecnn.experiments.simulate import run_simulation, write_outputs
from grl_aecnn.mec.channel import shannon_rate
from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.mec.simulator import MecSimulator, Observation
from grl_aecnn.policies import make_policy
from grl_aecnn.profile import ProfileBuildConfig, build_profile, save_profile
from grl_aecnn.profile.build import LEVEL_PREFIX, UNLEVELLED
from grl_aecnn.runtime.auth import authorization
from grl_aecnn.runtime.config import TestbedConfig
from grl_aecnn.runtime.shaping import NetnsLinks, ShapingError, probe_tc
from grl_aecnn.store import atomic_write_bytes, read_json
from grl_aecnn.zoo import load_card

# The sim-vs-real table: (row label, summary key path); latencies are over successful tasks, as in summary().
COMPARED = (("avg accuracy", ("avg_accuracy",)), ("reliability", ("reliability",)),
            ("throughput /s", ("throughput_per_s",)), ("latency p50 ms", ("latency_ms", "p50")),
            ("latency p95 ms", ("latency_ms", "p95")), ("offload fraction", ("offload_fraction",)),
            *((f"{part} p50 ms", ("latency_breakdown_ms", part, "p50")) for part in ("device", "upload", "server")))
_CLI = "from grl_aecnn.cli import app; app()"
# Device statuses of tasks that got a label: from the chosen server, or locally when it was unreachable.
ANSWERED = ("ok", "fallback_local")


class TestbedError(GrlAecnnError):
    """A testbed process failed to start or answer."""

    __test__ = False


def option_level(name: str) -> tuple[str, int]:
    """(codec id, level) of a byte option: the inverse of `grl_aecnn.profile.option_name`."""
    codec, _, tag = name.partition(":")
    if codec in UNLEVELLED:
        return codec, 0
    prefix = LEVEL_PREFIX.get(codec, "L")
    if not (tag.startswith(prefix) and tag[len(prefix):].isdigit()):
        raise TestbedError(f"option {name!r} is not '<codec>:{prefix}<level>'")
    return codec, int(tag[len(prefix):])


def choose_shaping(requested: str) -> tuple[str, str]:
    """(mode, why): tc when asked for or when `auto` finds it usable, else the token bucket."""
    if requested == "token_bucket":
        return "token_bucket", "requested"
    usable, why = probe_tc()
    if usable:
        return "tc", why
    if requested == "tc":
        raise ShapingError(f"tc shaping requested but unavailable: {why}")
    return "token_bucket", f"tc unavailable ({why})"


class Processes:
    """Child processes that report readiness through a ready file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, run_dir: Path, env: dict[str, str]):
        self.run_dir, self.env = run_dir, env
        self.children: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], prefix: list[str]) -> None:
        ready = self.run_dir / f"{name}.ready.json"
        ready.unlink(missing_ok=True)
        log = open(self.run_dir / f"{name}.log", "wb")
        cmd = [*prefix, sys.executable, "-c", _CLI, *args, "--ready-file", str(ready)]
        self.children.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env), ready))
        log.close()

    def start_with_config(self, name: str, command: list[str], cfg, prefix: list[str]) -> None:
        """Write `cfg` (a pydantic config) to <run_dir>/<name>.yaml and start `command --config` it."""
        path = self.run_dir / f"{name}.yaml"
        atomic_write_bytes(path, dump_config(cfg).encode())
        self.start(name, [*command, "--config", str(path)], prefix)

    def wait_ready(self, timeout_s: float) -> dict[str, dict]:
        end = time.monotonic() + timeout_s
        ready: dict[str, dict] = {}
        while len(ready) < len(self.children):
            for name, proc, path in self.children:
                if name in ready:
                    continue
                if path.exists():
                    ready[name] = read_json(path)
                elif proc.poll() is not None:
                    tail = (self.run_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise TestbedError(f"{name} exited with code {proc.returncode} before it was ready:\n{tail}")
            if time.monotonic() > end:
                late = sorted({n for n, _, _ in self.children} - set(ready))
                raise TestbedError(f"not ready after {timeout_s} s: {late} (logs in {self.run_dir})")
            time.sleep(0.1)
        return ready

    def kill(self, name: str) -> None:
        """SIGKILL one child (fault injection) and reap it."""
        proc = next(p for n, p, _ in self.children if n == name)
        proc.kill()
        proc.wait()

    def stop(self, grace_s: float = 10.0) -> None:
        for _, proc, _ in self.children:
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in self.children:
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Controller:
    """Drives the slots: check the servers, observe, decide, route around servers that are down,
    shape, order, collect."""

    def __init__(self, sim: MecSimulator, policy, profile_levels: dict[int, tuple[str, int]], servers: list[str],
                 devices: list[str], secret: str, scheme: str, shaping: str, links: NetnsLinks | None,
                 grace_s: float, kill: tuple[int, Callable[[], None]] | None = None, time_scale: float = 1.0):
        self.sim, self.policy, self.levels = sim, policy, profile_levels
        self.servers, self.devices = servers, devices
        self.secret, self.scheme, self.shaping, self.links, self.grace_s = secret, scheme, shaping, links, grace_s
        self.kill = kill  # (slot, action): fault injection once that slot's orders are out
        self.time_scale = time_scale  # real seconds per emulated second (TestbedConfig.time_scale)
        self.records: list[dict[str, np.ndarray]] = []
        self.servers_down: list[list[int]] = []  # per slot
        self.rerouted: list[int] = []  # per slot: tasks moved off a server that was down
        self.session: aiohttp.ClientSession | None = None

    async def _call(self, method: str, url: str, path: str, payload: dict, timeout_s: float,
                    strict: bool = False) -> dict:
        """The JSON answer; a timeout, a dropped connection, a body that is not JSON or (unless
        `strict`: then TestbedError) an HTTP error become a status, so every task gets one recorded."""
        body = json.dumps(payload).encode()
        headers = {"Authorization": authorization(self.scheme, self.secret, method, path, body),
                   "Content-Type": "application/json"}
        try:
            async with self.session.request(method, url + path, data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                text = await response.text()
                if response.status != 200:
                    if strict:
                        raise TestbedError(f"{method} {url}{path}: HTTP {response.status}: {text[:500]}")
                    return {"status": f"http_{response.status}", "reason": text[:500]}
                return json.loads(text)
        except (asyncio.TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return {"status": "timeout" if isinstance(exc, asyncio.TimeoutError) else "error", "reason": repr(exc)}

    async def _shape(self, md: int, rate_bps: float) -> None:
        proc = await asyncio.create_subprocess_exec(*self.links.rate_command(md, rate_bps),
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode:
            raise ShapingError(f"tc rate change for device {md}: {err.decode().strip()}")

    async def run(self, slots: int) -> None:
        sc = self.sim.sc
        async with aiohttp.ClientSession() as self.session:
            for slot in range(slots):
                slot_start = time.monotonic()
                # The slot's load update doubles as a health check: a server that cannot take it is
                # down for this slot (and up again once it answers).
                # A server that answers with an HTTP error (e.g. 401: a wrong secret) is misconfigured, not down.
                answers = await asyncio.gather(*(self._call("PUT", url, "/v1/load", {"available": float(a)}, 5.0,
                                                            strict=True)
                                                 for url, a in zip(self.servers, self.sim.avail_true)))
                down = {m for m, answer in enumerate(answers) if "available" not in answer}
                # As the simulation runner: only a perfect-information policy (the oracle) sees the truth.
                observation = self.sim.observe(perfect=getattr(self.policy, "perfect_information", False))
                actions = self.reroute(self.policy.act(observation), observation, down)
                md_flops = self.sim.md_flops  # step() moves the simulator on to the next slot
                rec = self.sim.step(actions)["record"]
                rates = shannon_rate(rec["bw_share"] * sc.edge.bandwidth_hz, rec["power_w"],
                                     10 ** (np.nan_to_num(rec["gain_true_db"], nan=-np.inf) / 10),
                                     self.sim.n0) / self.time_scale
                if self.shaping == "tc":
                    await asyncio.gather(*(self._shape(int(md), float(r))
                                           for md, es, r in zip(rec["md"], rec["es"], rates) if es >= 0 and r > 0))
                start = time.time()
                orders = [self._order(rec, i, start, rates[i], md_flops) for i in range(len(rec["md"]))]
                dispatched = asyncio.gather(*(self._dispatch(rec, i, order) for i, order in enumerate(orders)))
                if self.kill is not None and self.kill[0] == slot:
                    self.kill[1]()
                self.records.append(self._real_record(rec, await dispatched))
                self.servers_down.append(sorted(down))
                # Slots are paced in real time; a slot whose tasks ran long delays the next one.
                await asyncio.sleep(max(0.0, slot_start + sc.slot_s * self.time_scale - time.monotonic()))

    def reroute(self, actions: np.ndarray, obs: Observation, down: set[int]) -> np.ndarray:
        """The policy's actions, with tasks for a server that is down moved to the live server of
        the best estimated gain for that device (same option), or to local when none is live. The
        count of moved tasks is appended to `rerouted` (one entry per slot)."""
        es, _ = obs.decode(actions)
        hit = np.flatnonzero(np.isin(es, sorted(down)))
        self.rerouted.append(len(hit))
        if not len(hit):
            return actions
        out = np.array(actions, copy=True)
        live = np.array([m not in down for m in range(obs.n_es)])
        if not live.any():
            out[hit] = 0
            return out
        k = len(obs.offload_options)
        best = np.where(live, obs.gain_est[hit], -np.inf).argmax(1)
        out[hit] = 1 + best * k + (out[hit] - 1) % k  # action = 1 + server x K + option slot
        return out

    def _order(self, rec: dict, i: int, start: float, rate: float, md_flops: np.ndarray) -> dict | None:
        """The device's order for task i of the slot, or None when the allocation left it out."""
        md, es, option = int(rec["md"][i]), int(rec["es"][i]), int(rec["option"][i])
        order = {"task_id": f"s{int(rec['slot'][i])}-md{md}", "sample": int(rec["sample"][i]), "start_unix": start,
                 "deadline_unix": start + rec["deadline_ms"][i] / 1e3 * self.time_scale,
                 "device_flops_per_s": float(md_flops[md]) / self.time_scale,
                 "wait_s": self.grace_s}
        if es < 0:
            return {**order, "mode": "local"}
        if not rate > 0:  # not admitted: no bandwidth or no power for this task
            return None
        codec, level = self.levels[option]
        return {**order, "mode": "offload", "server_url": self.servers[es], "codec": codec, "level": level,
                "rate_bps": float(rate), "shaping": "external" if self.shaping == "tc" else "token_bucket"}

    async def _dispatch(self, rec: dict, i: int, order: dict | None) -> dict:
        if order is None:
            return {"status": "not_admitted"}
        timeout = order["deadline_unix"] - time.time() + 2 * self.grace_s + 5.0
        return await self._call("POST", self.devices[int(rec["md"][i])], "/v1/task", order, timeout)

    def _real_record(self, rec: dict, results: list[dict]) -> dict[str, np.ndarray]:
        """The slot's tasks in the simulator's columns, with what really happened (times in
        emulated milliseconds: real ones divided by the time scale)."""
        sc = self.sim.sc
        measured = {k: np.array([r.get(k, np.nan) for r in results], float) / self.time_scale
                    for k in ("t_device_ms", "t_upload_ms", "t_server_ms", "latency_ms")}
        flops = np.array([r.get("device_flops", 0.0) for r in results], float)
        j_per_flop = self.sim.md_j_per_flop[rec["md"]]
        ok = np.array([r.get("status") in ANSWERED for r in results], bool)
        status = np.array([r.get("status", "error") for r in results])
        energy = flops * j_per_flop + rec["power_w"] * np.nan_to_num(measured["t_upload_ms"]) / 1e3
        # Left out of energy per task, as in the simulator: a task not admitted (inf, the simulator's
        # value) and one whose device never reported (NaN: its energy is unknown, not zero).
        reported = np.array(["device_flops" in r for r in results], bool)
        energy = np.where(status == "not_admitted", np.inf, np.where(reported, energy, np.nan))
        on_time = ok & (measured["latency_ms"] <= rec["deadline_ms"])
        within = energy <= sc.device.energy_budget_j * (1 + 1e-9)
        success = on_time & within
        right = np.array([r.get("label") is not None and r.get("label") == r.get("true_label") for r in results], bool)
        correct = success & right
        out = {k: v.copy() for k, v in rec.items()}
        out.update(measured, energy_j=energy, on_time=on_time, within_energy=within, success=success, correct=correct,
                   reward=np.where(success, correct.astype(float), -sc.failure_penalty),
                   status=status)
        return out


def per_slot_series(controller: Controller) -> dict[str, list]:
    """Per slot: tasks, successes, local fallbacks (server unreachable), tasks rerouted off a down
    server, and the servers that were down; where a fault's dip and recovery show."""
    return {"tasks": [len(r["slot"]) for r in controller.records],
            "success": [int(r["success"].sum()) for r in controller.records],
            "fallback_local": [int((r["status"] == "fallback_local").sum()) for r in controller.records],
            "rerouted": controller.rerouted, "servers_down": controller.servers_down}


def fault_summary(series: dict[str, list], es: int, slot: int) -> dict:
    """Reliability before the kill, in its slot and after it; when the controller first saw the server down."""
    tasks, success = np.array(series["tasks"]), np.array(series["success"])
    part = lambda sel: float(success[sel].sum() / tasks[sel].sum()) if tasks[sel].sum() else None  # noqa: E731
    slots = np.arange(len(tasks))
    seen = [s for s, down in enumerate(series["servers_down"]) if es in down]
    return {"killed": f"es{es}", "slot": slot, "detected_at_slot": seen[0] if seen else None,
            "reliability": {"before": part(slots < slot), "kill_slot": part(slots == slot),
                            "after": part(slots > slot)},
            "fallback_local": int(sum(series["fallback_local"])), "rerouted": int(sum(series["rerouted"]))}


def _get(summary: dict, path: tuple[str, ...]):
    for key in path:
        summary = summary[key]
    return summary


def comparison(sim_summary: dict, real_summary: dict) -> list[dict]:
    return [{"metric": label, "sim": _get(sim_summary, path), "real": _get(real_summary, path)}
            for label, path in COMPARED]


def comparison_markdown(rows: list[dict], title: str) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [f"### {title}", "", "| metric | simulated | testbed |", "| --- | --- | --- |"]
    lines += [f"| {r['metric']} | {fmt(r['sim'])} | {fmt(r['real'])} |" for r in rows]
    return "\n".join(lines) + "\n"


def run_testbed(scenario_path: str | os.PathLike, policy: str, slots: int, seed: int, cfg: TestbedConfig,
                json_path: str | os.PathLike, allocator: str = "optimal") -> dict:
    """Run the testbed; writes the summary JSON (with the sim-vs-real rows), the event log and the
    resolved scenario beside it as `simulate` does, plus the simulation's own outputs (`.sim.json`),
    the measured profile (`.profile.json`), the table (`.sim-vs-real.md`) and the process logs."""
    json_path = Path(json_path)
    scenario = load_config(scenario_path, Scenario)
    if cfg.kill is not None and not (cfg.kill.es < scenario.n_es and cfg.kill.slot < slots):
        raise TestbedError(f"kill: es{cfg.kill.es} at slot {cfg.kill.slot}, but the run has {scenario.n_es} servers "
                           f"and {slots} slots")
    stem = json_path.with_suffix("")
    run_dir = Path(f"{stem}.runtime")
    run_dir.mkdir(parents=True, exist_ok=True)
    shaping, shaping_why = choose_shaping(cfg.shaping)

    # The profile is measured on the very images the devices hold (ImageSet.take(images) of the test
    # split), so simulator and testbed see the same payload and correctness for every task.
    # Few batch-1 timings: they are metadata only (simulator and testbed pace by FLOPs).
    profile = build_profile(ProfileBuildConfig(model=cfg.model, codecs=cfg.codecs, skip_missing=False,
                                               limit=cfg.images, latency_samples=5), show_progress=False)
    if analog := [o.name for o in profile.options if o.kind == "symbols"]:
        raise TestbedError(f"analog options {analog} cannot go over a byte link; drop their codecs from the config")
    profile_path = save_profile(profile, f"{stem}.profile.json")
    levels = {i: option_level(o.name) for i, o in enumerate(profile.options) if o.kind != "local"}
    dataset = load_card(cfg.model)["dataset"]["name"]

    secret = secrets.token_urlsafe(32)  # fresh per run: a stray process of another run cannot talk to these
    env = {**os.environ, cfg.auth.token_env: secret}
    links = NetnsLinks(scenario.n_md, f"{os.getpid() % 100000}") if shaping == "tc" else None
    procs = Processes(run_dir, env)
    try:
        if links is not None:
            links.setup()
        server_host = links.server_host if links else cfg.server.host
        for m in range(scenario.n_es):
            server_cfg = cfg.server.model_copy(update={
                "name": f"es{m}", "host": server_host, "port": 0, "model": cfg.model, "codecs": cfg.codecs,
                "capacity_flops": scenario.edge.capacity_flops / cfg.time_scale, "auth": cfg.auth})
            procs.start_with_config(f"es{m}", ["serve", "edge"], server_cfg, [])
        for i in range(scenario.n_md):
            device_cfg = cfg.device.model_copy(update={
                "name": f"md{i}", "host": links.device_ip(i) if links else cfg.device.host, "port": 0,
                "model": cfg.model, "codecs": cfg.codecs, "dataset": dataset, "images": cfg.images,
                "auth": cfg.auth})
            procs.start_with_config(f"md{i}", ["device"], device_cfg, links.prefix(i) if links else [])
        ready = procs.wait_ready(cfg.startup_timeout_s)
        mismatched = [n for n, r in ready.items()
                      if r["role"] == "device" and r["dataset_checksum"] != f"sha256:{profile.dataset_checksum}"]
        if mismatched:
            raise TestbedError(f"devices {mismatched} hold other images than the controller's profile")
        sim = MecSimulator(scenario, profile, seed=seed, allocator=allocator)
        controller = Controller(sim, make_policy(policy, seed), levels,
                                [ready[f"es{m}"]["url"] for m in range(scenario.n_es)],
                                [ready[f"md{i}"]["url"] for i in range(scenario.n_md)], secret, cfg.auth.scheme,
                                shaping, links, cfg.result_grace_s,
                                None if cfg.kill is None else (cfg.kill.slot, lambda: procs.kill(f"es{cfg.kill.es}")),
                                cfg.time_scale)
        started = time.time()
        asyncio.run(controller.run(slots))
        wall_s = time.time() - started
    finally:
        procs.stop()
        if links is not None:
            links.teardown()

    # The real outcomes in the simulator's own log and summary code (same columns, same metrics).
    real = copy.copy(sim.batch)
    real.records = controller.records
    sim_result, sim_run = run_simulation(scenario_path, policy, slots, seed, profile_path, allocator)
    write_outputs(sim_result, sim_run, f"{stem}.sim.json")
    statuses = np.concatenate([r["status"] for r in controller.records]) if controller.records else np.zeros(0, str)
    rows = comparison(sim_result, real.summary())
    result = {**{k: sim_result[k] for k in ("scenario", "scenario_file", "policy", "allocator", "seed", "profile",
                                            "profile_model", "profile_synthetic")},
              **real.summary(), "slots": slots, "mode": "testbed", "wall_s": wall_s, "time_scale": cfg.time_scale,
              "shaping": {"mode": shaping, "why": shaping_why},
              "status_counts": {str(s): int(c) for s, c in zip(*np.unique(statuses, return_counts=True))},
              "processes": {"edge_servers": scenario.n_es, "devices": scenario.n_md}, "images": profile.n_samples,
              "sim_vs_real": rows, "simulation": f"{stem.name}.sim.json",
              "per_slot": per_slot_series(controller)}
    if cfg.kill is not None:
        result["fault"] = fault_summary(result["per_slot"], cfg.kill.es, cfg.kill.slot)
    title = (f"{scenario.name}: policy {policy}, {slots} slots, seed {seed}, shaping {shaping}, "
             f"time scale {cfg.time_scale:g}")
    atomic_write_bytes(f"{stem}.sim-vs-real.md", comparison_markdown(rows, title).encode())
    write_outputs(result, real, json_path)
    return result
