"""The split-inference runtime: edge server over real HTTP on 127.0.0.1, auth, limits, malformed
frames, late answers, EDF order, the token bucket, and a tiny testbed run with real processes."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from grl_aecnn.cli import app
from grl_aecnn.data import load_dataset, to_tensor
from grl_aecnn.entropy import pack_frame
from grl_aecnn.errors import DatasetNotFoundError
from grl_aecnn.runtime.auth import AuthError, authorization, verify
from grl_aecnn.data import ImageSet
from grl_aecnn.runtime.config import AuthConfig, DeviceConfig, EdgeServerConfig
from grl_aecnn.runtime.device import Device
from grl_aecnn.runtime.edf import EdfQueue, Job
from grl_aecnn.runtime.load import encode_frames, run_load
from grl_aecnn.runtime.server import EdgeServer, load_served_codecs
from grl_aecnn.runtime.shaping import NetnsLinks, TokenBucket, probe_tc, shaped_chunks
from grl_aecnn.zoo import load_backbone
from tests.conftest import SHARED_DATA

MODEL = "resnet20-cifar10"
SECRET = "runtime-test-secret-0123456789"
LIMIT = 64 * 1024



def _test_images(n: int):
    """ImageSet.take(n) of the CIFAR-10 test split, or a skip naming why."""
    with pytest.MonkeyPatch.context() as mp:
        if "GRL_AECNN_DATA" not in os.environ:
            mp.setenv("GRL_AECNN_DATA", str(SHARED_DATA))
        try:
            return load_dataset("cifar10", "test").take(n)
        except DatasetNotFoundError as exc:
            pytest.skip(f"CIFAR-10 test set absent: {exc}")


class ServerThread:
    """An EdgeServer on 127.0.0.1, ephemeral port, in its own event loop thread."""

    def __init__(self, server: EdgeServer):
        self.server, self.loop = server, asyncio.new_event_loop()
        started = threading.Event()

        async def start():
            self.runner = web.AppRunner(server.app())
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", 0).start()
            self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
            started.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        assert started.wait(30), "server did not start"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture(scope="module")
def codecs():
    return load_served_codecs(MODEL, ("aecnn",))


@pytest.fixture(scope="module")
def edge(codecs):
    cfg = EdgeServerConfig(max_request_bytes=LIMIT, auth=AuthConfig(token=SECRET))
    server = EdgeServer(cfg, codecs)
    server.warm_up()
    running = ServerThread(server)
    yield running
    running.close()


def http(method: str, url: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, data=body if method != "GET" else None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw.decode()


def infer(edge: ServerThread, frame: bytes, deadline: float = math.inf, auth: str | None = None):
    headers = {"Authorization": authorization("bearer", SECRET, "POST", "/v1/infer", frame) if auth is None else auth,
               "Content-Type": "application/octet-stream", "X-Task-Id": "t"}
    if math.isfinite(deadline):
        headers["X-Deadline"] = f"{deadline:.6f}"
    return http("POST", edge.url + "/v1/infer", frame, headers)


# ---- edge server over HTTP -------------------------------------------------------------------------
def test_real_bytes_round_trip_to_the_correct_label(edge, codecs):
    images = _test_images(8)
    x = to_tensor(images.images, images.mean, images.std)
    best = codecs[("aecnn", 1)]
    # Images the codec itself classifies correctly (accuracies are not hard-coded: models may be replaced).
    right = [i for i in range(len(images)) if int(best.decode(best.encode(x[i])).argmax()) == images.labels[i]][:3]
    assert right, "the best AECNN level got none of 8 test images right"
    for i in right:
        for level in (1, max(k[1] for k in codecs)):
            frame = codecs[("aecnn", level)].encode(x[i])
            status, answer = infer(edge, frame, deadline=time.time() + 30)
            assert status == 200 and answer["status"] == "ok", answer
            # The server's label is the codec's own, and for these images the true one at level 1.
            assert answer["label"] == int(codecs[("aecnn", level)].decode(frame).argmax())
            assert level != 1 or answer["label"] == images.labels[i]
            assert answer["received_unix"] <= answer["answered_unix"] and answer["batch_size"] >= 1


def test_requests_without_valid_credentials_are_refused(edge, codecs):
    frame = pack_frame("aecnn", 1, (1, 1, 1), b"\x00")
    status, answer = infer(edge, frame, auth="")
    assert status == 401 and answer["error"] == "unauthorized"
    status, answer = infer(edge, frame, auth="Bearer not-the-secret-at-all")
    assert status == 401
    status, _ = http("PUT", edge.url + "/v1/load", b'{"available": 0.5}')
    assert status == 401


def test_a_bearer_header_with_undecodable_bytes_is_a_401_not_a_crash():
    with pytest.raises(AuthError, match="invalid bearer token"):
        verify("bearer", SECRET, "Bearer \udcff\udcfe", "POST", "/v1/infer", b"", max_skew_s=30)


def test_hmac_signatures_bind_body_path_and_time():
    body = b"frame bytes"
    header = authorization("hmac", SECRET, "POST", "/v1/infer", body, now=1000.0)
    verify("hmac", SECRET, header, "POST", "/v1/infer", body, max_skew_s=30, now=1010.0)
    # the deadline and task id are signed: a replay cannot change them
    signed = {"X-Task-Id": "7", "X-Deadline": "1001.5"}
    with_headers = authorization("hmac", SECRET, "POST", "/v1/infer", body, now=1000.0, headers=signed)
    verify("hmac", SECRET, with_headers, "POST", "/v1/infer", body, max_skew_s=30, now=1000.0, headers=signed)
    for forged in ({**signed, "X-Deadline": "1e9"}, {**signed, "X-Task-Id": "8"}, {}):
        with pytest.raises(AuthError, match="invalid signature"):
            verify("hmac", SECRET, with_headers, "POST", "/v1/infer", body, max_skew_s=30, now=1000.0, headers=forged)
    for args in ((SECRET, header, "POST", "/v1/infer", b"other body", 1000.0),
                 (SECRET, header, "POST", "/v1/load", body, 1000.0),
                 ("another-secret-of-length", header, "POST", "/v1/infer", body, 1000.0),
                 (SECRET, header, "POST", "/v1/infer", body, 1100.0),  # replayed too late
                 (SECRET, None, "POST", "/v1/infer", body, 1000.0)):
        with pytest.raises(AuthError):
            verify("hmac", args[0], args[1], args[2], args[3], args[4], max_skew_s=30, now=args[5])


def test_oversize_bodies_get_413(edge):
    status, answer = infer(edge, b"\x00" * (LIMIT + 1))
    assert status == 413 and answer["error"] == "too_large"


def test_malformed_frames_get_400_with_the_reason_and_the_server_stays_up(edge, codecs):
    good = codecs[("aecnn", 1)].encode(to_tensor(np.zeros((1, 32, 32, 3), np.uint8), (0.5,) * 3, (0.25,) * 3)[0])
    corrupted = bytearray(good)
    corrupted[len(good) // 2] ^= 0xFF
    for frame, reason in ((b"not a frame at all", "bad magic"), (good[:-3], "truncated"),
                          (bytes(corrupted), "CRC mismatch")):
        status, answer = infer(edge, frame)
        assert status == 400 and answer["error"] == "malformed_frame" and reason in answer["reason"], answer
    status, answer = infer(edge, pack_frame("aecnn", 200, (1, 1, 1), b"\x00"))
    assert status == 400 and answer["error"] == "unsupported_codec"
    status, health = http("GET", edge.url + "/healthz")
    assert status == 200 and health["status"] == "ok"
    status, answer = infer(edge, good, deadline=time.time() + 30)
    assert status == 200 and answer["status"] == "ok"


def test_an_impossible_deadline_is_answered_late_at_once(edge, codecs):
    frame = codecs[("aecnn", 1)].encode(to_tensor(np.zeros((1, 32, 32, 3), np.uint8), (0.5,) * 3, (0.25,) * 3)[0])
    for deadline in (time.time() - 1.0, time.time() + 1e-5):
        status, answer = infer(edge, frame, deadline=deadline)
        assert status == 200 and answer["status"] == "late" and answer["reason"]
        assert answer["answered_unix"] - answer["received_unix"] < 0.5


def test_an_absurd_deadline_is_refused_and_a_failing_batch_does_not_stop_the_worker(edge, codecs, monkeypatch):
    frame = codecs[("aecnn", 1)].encode(to_tensor(np.zeros((1, 32, 32, 3), np.uint8), (0.5,) * 3, (0.25,) * 3)[0])
    for deadline in ("1e308", "-inf", f"{time.time() - 200_000:.3f}"):
        headers = {"Authorization": authorization("bearer", SECRET, "POST", "/v1/infer", frame),
                   "X-Deadline": deadline}
        status, answer = http("POST", edge.url + "/v1/infer", frame, headers)
        assert status == 400 and answer["error"] == "bad_header", (deadline, answer)
    server = edge.server

    def broken(batch):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(server, "_decode_batch", broken)
    status, answer = infer(edge, frame, deadline=time.time() + 30)
    assert status == 500 and answer["error"] == "internal_error"
    monkeypatch.undo()
    status, answer = infer(edge, frame, deadline=time.time() + 30)
    assert status == 200 and answer["status"] == "ok" and answer["deadline_met"] is True


def test_a_queued_job_that_can_no_longer_make_it_is_answered_late_before_its_deadline(edge, codecs):
    """Emulated capacity slowed to 0.6 s per job; three jobs due in 1.5 s: two fit, the third is
    answered "late" when its latest start passes, not when its deadline does."""
    from concurrent.futures import ThreadPoolExecutor

    codec = codecs[("aecnn", 1)]
    frame = codec.encode(to_tensor(np.zeros((1, 32, 32, 3), np.uint8), (0.5,) * 3, (0.25,) * 3)[0])
    slow = codec.server_flops / (edge.server.cfg.capacity_flops * 0.6)
    try:
        edge.server.available = slow
        t0 = time.time()
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: infer(edge, frame, deadline=t0 + 1.5)[1], range(3)))
    finally:
        edge.server.available = 1.0
    # The two that fit run one after the other or as one batch of two; either way the third is
    # answered late before the second finishes.
    late = [a for a in answers if a["status"] == "late"]
    ok = [a for a in answers if a["status"] == "ok"]
    assert len(late) == 1 and len(ok) == 2, answers
    assert late[0]["answered_unix"] < max(a["answered_unix"] for a in ok) <= t0 + 1.5


def test_load_metrics_and_openapi(edge):
    body = b'{"available": 0.3}'
    status, answer = http("PUT", edge.url + "/v1/load", body,
                          {"Authorization": authorization("bearer", SECRET, "PUT", "/v1/load", body)})
    assert status == 200 and answer == {"available": 0.3}
    assert edge.server.available == 0.3
    status, text = http("GET", edge.url + "/metrics")
    assert status == 200 and "grl_edge_requests_total" in text and "grl_edge_available_fraction 0.3" in text
    status, text = http("GET", edge.url + "/openapi.yaml")
    spec = yaml.safe_load(text)
    assert status == 200 and spec["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    tiny = ImageSet("tiny", "test", np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int64), ("a",), "made up",
                    (0.5,) * 3, (0.25,) * 3)
    device = Device(DeviceConfig(auth=AuthConfig(token=SECRET)), tiny, load_backbone(MODEL), {})
    for application in (edge.server.app(), device.app()):
        served = {(r.method.lower(), r.resource.canonical) for r in application.router.routes() if r.method != "HEAD"}
        assert served <= documented


def test_load_of_500_requests_from_5_clients_gets_an_answer_for_each_and_no_error(edge, codecs):
    """The pytest-sized load test (bench/runtime_load.py is the full one): every request is answered
    "ok" or, when its deadline cannot be met, "late"; nothing else."""
    frames = encode_frames(list(codecs.values()), _test_images(4))
    result = asyncio.run(run_load(edge.url, frames, "bearer", SECRET, n_requests=500, clients=5, deadline_ms=100.0,
                                  max_s=120.0))
    assert result["sent"] == 500 and sum(result["counts"].values()) == 500 and not result["stopped_by_time_limit"]
    assert result["unexpected"] == {} and result["counts"]["ok"] > 0, result["counts"]
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]


def test_option_names_map_back_to_codec_levels(codecs):
    from grl_aecnn.profile import option_name
    from grl_aecnn.runtime.testbed import TestbedError, option_level

    for key, codec in codecs.items():
        assert option_level(option_name(codec)) == key
    assert option_level("png") == ("png", 0) and option_level("jpeg:q50") == ("jpeg", 50)
    with pytest.raises(TestbedError):
        option_level("aecnn:q3")


# ---- EDF queue ---------------------------------------------------------------------------------------
def _job(deadline: float, key=("aecnn", 1), name: str = "") -> Job:
    return Job(name or str(deadline), key, b"", deadline, 0.0)


def test_edf_queue_serves_earliest_deadline_first_and_batches_one_key():
    q = EdfQueue()
    for d, key in ((5, ("aecnn", 2)), (3, ("aecnn", 1)), (9, ("aecnn", 1)), (1, ("aecnn", 2)), (7, ("aecnn", 2))):
        q.push(_job(d, key))
    assert len(q) == 5 and q.head().deadline == 1
    assert [j.deadline for j in q.pop_batch(2)] == [1, 5]  # earliest first, same key only, at most 2
    assert [j.deadline for j in q.pop_batch(8)] == [3, 9]
    assert [j.deadline for j in q.pop_batch(8)] == [7]
    assert q.pop_batch(8) == [] and len(q) == 0


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans(), st.sampled_from([1, 2])), min_size=1, max_size=30),
       st.integers(1, 5))
def test_edf_queue_order_property(items, max_batch):
    """Every batch starts with the earliest queued deadline, and expired jobs never come out."""
    q, jobs = EdfQueue(), []
    for deadline, expire, level in items:
        job = _job(deadline, ("aecnn", level))
        q.push(job)
        jobs.append((job, expire))
    for job, expire in jobs:
        if expire:
            assert q.expire(job) and not q.expire(job)
    out = []
    while batch := q.pop_batch(max_batch):
        remaining = [j.deadline for j, e in jobs if j.state == "queued"]
        assert all(batch[0].deadline <= d for d in remaining)
        assert len({j.key for j in batch}) == 1 and len(batch) <= max_batch
        out += batch
    assert sorted(map(id, out)) == sorted(id(j) for j, e in jobs if not e)


# ---- token bucket ------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200)
@given(st.floats(1e3, 1e8), st.integers(1, 5000),
       st.lists(st.tuples(st.floats(0, 0.01), st.integers(1, 4000)), min_size=1, max_size=40))
def test_token_bucket_never_releases_more_than_burst_plus_rate_times_time(rate_bps, burst, requests):
    clock = FakeClock()
    bucket = TokenBucket(rate_bps, burst, clock)
    releases = []
    for gap, n in requests:
        clock.now += gap
        releases.append((clock.now + bucket.reserve(n), n))
    releases.sort()
    sent = 0
    for t, n in releases:
        sent += n
        assert sent <= burst + rate_bps / 8 * t + 1e-6 * sent
    # And it is work-conserving: booked all at once, the last byte leaves exactly when the rate allows.
    clock2 = FakeClock()
    fresh = TokenBucket(rate_bps, burst, clock2)
    total = sum(n for _, n in requests)
    last = max(fresh.reserve(n) for _, n in requests)
    assert last == pytest.approx(max(0.0, total - burst) / (rate_bps / 8), rel=1e-9, abs=1e-12)


def test_shaped_upload_takes_as_long_as_the_rate_says():
    data, rate, burst = bytes(20_000), 800e3, 1500

    async def send():
        start = time.monotonic()
        received = b"".join([chunk async for chunk in shaped_chunks(data, TokenBucket(rate, burst), 256)])
        return received, time.monotonic() - start

    received, elapsed = asyncio.run(send())
    expected = (len(data) - burst) * 8 / rate
    assert received == data and expected <= elapsed < expected + 0.5


# ---- CLI and testbed -----------------------------------------------------------------------------------
def test_cli_refuses_to_start_without_a_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("GRL_AECNN_TOKEN", raising=False)
    config = tmp_path / "edge.yaml"
    config.write_text("name: es9\nport: 0\n")
    for args in (["serve", "edge", "--config", str(config)], ["device", "--config", str(config)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "GRL_AECNN_TOKEN" in result.output
    result = CliRunner().invoke(app, ["serve", "edge", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "not found" in result.output


def test_shipped_runtime_configs_validate():
    from grl_aecnn.config import load_config
    from grl_aecnn.runtime.config import TestbedConfig

    root = Path(__file__).resolve().parents[1] / "configs" / "runtime"
    for name, schema in (("edge", EdgeServerConfig), ("device", DeviceConfig), ("testbed", TestbedConfig)):
        assert load_config(root / f"{name}.yaml", schema) == schema()  # the files document the defaults
    from grl_aecnn.mec.scenario import Scenario

    for scenario in sorted(root.glob("scenario-*.yaml")):
        assert load_config(scenario, Scenario).n_md >= 1


def test_tiny_testbed_run_writes_summary_events_and_sim_vs_real(tmp_path, monkeypatch):
    _test_images(1)  # skips when the dataset is absent
    if "GRL_AECNN_DATA" not in os.environ:
        monkeypatch.setenv("GRL_AECNN_DATA", str(SHARED_DATA))  # the child processes read it
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text("name: tiny\nn_md: 2\nn_es: 1\nslot_s: 0.1\nlayout: {area_m: 100.0}\n")
    config = tmp_path / "testbed.yaml"
    # HMAC here (bearer elsewhere), so both schemes run end to end; time dilated 3x.
    config.write_text("images: 8\nshaping: token_bucket\nstartup_timeout_s: 240\nauth: {scheme: hmac}\n"
                      "time_scale: 3\n")
    out = tmp_path / "tb.json"
    result = CliRunner().invoke(app, ["testbed", "--scenario", str(scenario), "--policy", "random", "--slots", "3",
                                      "--config", str(config), "--json", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["mode"] == "testbed" and summary["tasks"] == 6 and summary["shaping"]["mode"] == "token_bucket"
    assert {r["metric"] for r in summary["sim_vs_real"]} >= {"avg accuracy", "reliability", "throughput /s",
                                                            "latency p50 ms", "latency p95 ms"}
    sim = json.loads((tmp_path / "tb.sim.json").read_text())
    assert [r["sim"] for r in summary["sim_vs_real"]][:3] == [sim["avg_accuracy"], sim["reliability"],
                                                             sim["throughput_per_s"]]
    real_header = (tmp_path / "tb.events.csv").read_text().splitlines()[0]
    assert real_header == (tmp_path / "tb.sim.events.csv").read_text().splitlines()[0]
    assert len((tmp_path / "tb.events.csv").read_text().splitlines()) == 7
    assert "| avg accuracy |" in (tmp_path / "tb.sim-vs-real.md").read_text()
    assert sum(summary["status_counts"].values()) == 6
    # Time scale 3: slots last 0.3 s in real time, and devices paced at a third of their emulated
    # speed still report at least the emulated device time once their real time is divided by 3.
    assert summary["time_scale"] == 3 and summary["wall_s"] >= 3 * 0.3
    real, simulated = (np.genfromtxt(tmp_path / name, delimiter=",", names=True, dtype=None, encoding=None)
                       for name in ("tb.events.csv", "tb.sim.events.csv"))
    ran = np.isfinite(real["t_device_ms"])
    assert ran.any() and np.all(real["t_device_ms"][ran] >= simulated["t_device_ms"][ran] * (1 - 1e-6))


TC_USABLE, TC_WHY = probe_tc()


@pytest.mark.skipif(not TC_USABLE, reason=f"tc path unavailable: {TC_WHY}")
def test_tc_link_shapes_a_real_tcp_upload():
    """One namespace, one veth link with tbf at 400 kbit/s: 40 kB from inside take >= (40 kB - burst) / rate."""
    import socket

    links = NetnsLinks(1, f"t{os.getpid() % 10000}")
    try:
        links.setup()
        subprocess.run(links.rate_command(0, 400e3), check=True, capture_output=True)
        listener = socket.create_server((links.server_host, 0))
        port = listener.getsockname()[1]
        got = []

        def receive():
            conn, _ = listener.accept()
            with conn:
                while chunk := conn.recv(65536):
                    got.append(len(chunk))

        reader = threading.Thread(target=receive)
        reader.start()
        sender = (f"import socket,time; s=socket.create_connection(('{links.server_host}',{port})); t=time.time(); "
                  "s.sendall(bytes(40000)); s.shutdown(socket.SHUT_WR); s.recv(1); print(time.time()-t)")
        start = time.monotonic()
        subprocess.run([*links.prefix(0), sys.executable, "-c", sender], check=True, capture_output=True, timeout=30)
        reader.join(30)
        elapsed = time.monotonic() - start
        listener.close()
    finally:
        links.teardown()
    assert sum(got) == 40000
    assert elapsed >= (40000 - 1600) * 8 / 400e3 * 0.9


def test_killing_one_of_three_servers_mid_run_loses_no_task_and_traffic_moves_to_the_others(tmp_path, monkeypatch):
    """es0 is SIGKILLed once slot 1's orders are out (the random policy, seed 0, sends all three
    of that slot's tasks to it). Those tasks fall back to local inference on the devices; from slot
    2 on the controller sees es0 down (its load update is refused) and routes its tasks to the live
    servers. Every task ends with a recorded status."""
    _test_images(1)
    if "GRL_AECNN_DATA" not in os.environ:
        monkeypatch.setenv("GRL_AECNN_DATA", str(SHARED_DATA))
    scenario = tmp_path / "three.yaml"
    scenario.write_text("name: three\nn_md: 3\nn_es: 3\nslot_s: 0.1\nlayout: {area_m: 100.0}\n")
    config = tmp_path / "testbed.yaml"
    config.write_text("images: 8\nshaping: token_bucket\nstartup_timeout_s: 240\nkill: {es: 0, slot: 1}\n")
    out = tmp_path / "fault.json"
    result = CliRunner().invoke(app, ["testbed", "--scenario", str(scenario), "--policy", "random", "--slots", "6",
                                      "--config", str(config), "--json", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    series, fault = summary["per_slot"], summary["fault"]
    assert summary["tasks"] == 18 and sum(summary["status_counts"].values()) == 18  # none lost
    assert set(summary["status_counts"]) <= {"ok", "late", "fallback_local", "not_admitted", "timeout"}
    assert series["servers_down"] == [[], [], [0], [0], [0], [0]] and fault["detected_at_slot"] == 2
    events = np.genfromtxt(out.with_suffix(".events.csv"), delimiter=",", names=True, dtype=None, encoding=None)
    assert not np.any((events["slot"] >= 2) & (events["es"] == 0))  # nothing is sent to the dead server
    sim_events = np.genfromtxt(tmp_path / "fault.sim.events.csv", delimiter=",", names=True, dtype=None,
                               encoding=None)
    meant_for_es0 = (sim_events["es"] == 0) & (sim_events["slot"] >= 2)
    assert sum(series["rerouted"]) == meant_for_es0.sum() > 0  # the policy's own choices, moved
    # The kill slot's admitted tasks for es0 were in flight: each got a local label instead of vanishing.
    hit = (events["slot"] == 1) & (events["es"] == 0) & (events["bw_share"] > 0)
    assert series["fallback_local"][1] == hit.sum() == summary["status_counts"]["fallback_local"] > 0


def test_a_device_with_no_time_left_reports_a_timeout_without_sending():
    """aiohttp reads a timeout of 0 as none at all: past the deadline the device must not send."""
    from types import SimpleNamespace

    device = SimpleNamespace(auth=SimpleNamespace(scheme="bearer", secret=SECRET), session=None)
    order = SimpleNamespace(task_id="t", deadline_unix=time.time() - 1.0, wait_s=0.5, shaping="external",
                            server_url="http://127.0.0.1:9")
    answer = asyncio.run(Device._offload(device, order, b"frame"))
    assert answer["status"] == "timeout" and "no time left" in answer["reason"]
