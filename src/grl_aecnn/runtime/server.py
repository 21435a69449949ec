"""The edge server (`grl-aecnn serve edge`): receives framed bitstreams of any served codec,
decodes them and runs the backbone's tail, batching jobs of the same codec level across devices,
in earliest-deadline-first order. A job that can no longer finish by its deadline is answered at
once with status "late". The server's compute speed is emulated: a batch takes at least its FLOPs
divided by capacity_flops x the available fraction (background load, set per slot by the testbed).
Wire protocol: docs/runtime.md and openapi.yaml."""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import Field, StrictFloat, ValidationError

from grl_aecnn.codecs import Codec, load_codec_levels
from grl_aecnn.config import StrictModel
from grl_aecnn.entropy import unpack_frame
from grl_aecnn.errors import BitstreamError
from grl_aecnn.runtime.config import EdgeServerConfig
from grl_aecnn.runtime.edf import EdfQueue, Job
from grl_aecnn.runtime.service import Authenticator, error_response, openapi, read_bounded, serve_until_signal
from grl_aecnn.zoo import load_card

# A deadline further than this from the server's clock is a malformed header, not a plan (it would
# also overflow the batch arithmetic).
MAX_DEADLINE_OFFSET_S = 86_400.0
# The batch-mate wait ends this long before the head job's latest start, so that waiting never makes
# the head late by itself.
_START_MARGIN_S = 1e-3

# Weight of the newest batch in the running estimate of the real decode time per job.
_EMA = 0.3


class LoadUpdate(StrictModel):
    """Body of PUT /v1/load: a JSON number (not a bool or a string) in (0, 1], nothing else."""

    available: StrictFloat = Field(gt=0, le=1)


def load_served_codecs(model: str, codec_names: tuple[str, ...]) -> dict[tuple[str, int], Codec]:
    return {(c.codec_id, c.level): c for name in codec_names for c in load_codec_levels(name, model)}


def decode_labels(codec: Codec, frames: list[bytes]) -> list[int | str]:
    """Per frame the predicted label, or the BitstreamError reason (a frame whose header was fine
    but whose payload is not). The frames are decoded together; if that fails, one by one, so only
    the bad ones are refused."""
    try:
        return [int(label) for label in codec.decode_batch(frames).argmax(1)]
    except BitstreamError:
        pass
    out: list[int | str] = []
    for frame in frames:
        try:
            out.append(int(codec.decode(frame).argmax()))
        except BitstreamError as exc:
            out.append(str(exc))
    return out


class EdgeServer:
    def __init__(self, cfg: EdgeServerConfig, codecs: dict[tuple[str, int], Codec]):
        self.cfg, self.codecs = cfg, codecs
        self.auth = Authenticator(cfg.auth)
        self.available = cfg.available
        self.queue = EdfQueue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self.decode_s = {key: 0.0 for key in codecs}  # running estimate of the real time per job
        self.registry = CollectorRegistry()
        self.m_requests = Counter("grl_edge_requests", "Inference requests by outcome", ["status"],
                                  registry=self.registry)
        self.m_batch = Histogram("grl_edge_batch_size", "Jobs per decoded batch", buckets=(1, 2, 4, 8, 16, 32, 64),
                                 registry=self.registry)
        self.m_service = Histogram("grl_edge_server_seconds", "Arrival to answer, answered jobs",
                                   registry=self.registry)
        self.m_missed = Counter("grl_edge_deadline_missed", "Answered (ok) jobs whose answer left after their "
                                "deadline", registry=self.registry)
        self.m_queue = Gauge("grl_edge_queue_depth", "Jobs waiting", registry=self.registry)
        self.m_available = Gauge("grl_edge_available_fraction", "Emulated available compute fraction",
                                 registry=self.registry)
        self.m_available.set(self.available)
        self.wakeup: asyncio.Event | None = None

    # ---- timing model --------------------------------------------------------------------------
    def emulated_s(self, key: tuple[str, int], n: int) -> float:
        return n * self.codecs[key].server_flops / (self.cfg.capacity_flops * self.available)

    def service_estimate_s(self, key: tuple[str, int], n: int = 1) -> float:
        """A batch takes the longer of the emulated time and the real decode time."""
        return max(self.emulated_s(key, n), n * self.decode_s[key])

    def warm_up(self) -> None:
        """Decode a frame per level twice: the first call loads lazy kernels, the second seeds the
        real-time estimate (timing the first would overestimate and call feasible jobs late)."""
        card = load_card(self.cfg.model)
        image = torch.zeros(card["in_channels"], card["image_size"], card["image_size"])
        for key, codec in self.codecs.items():
            data = codec.encode(image)
            codec.decode(data)
            start = time.perf_counter()
            codec.decode(data)
            self.decode_s[key] = time.perf_counter() - start

    # ---- HTTP handlers -------------------------------------------------------------------------
    async def infer(self, request: web.Request) -> web.Response:
        bearer = self.cfg.auth.scheme == "bearer"
        if bearer and (refused := self.auth.check(request, b"")):  # refuse before reading the body
            self.m_requests.labels("unauthorized").inc()
            return refused
        body = await read_bounded(request, self.cfg.max_request_bytes)
        if isinstance(body, web.Response):
            self.m_requests.labels("too_large").inc()
            return body
        if not bearer and (refused := self.auth.check(request, body)):
            self.m_requests.labels("unauthorized").inc()
            return refused
        arrived = time.time()
        try:
            frame = unpack_frame(body)
        except BitstreamError as exc:
            self.m_requests.labels("malformed").inc()
            return error_response(400, "malformed_frame", str(exc))
        key = (frame.codec_id, frame.level)
        if key not in self.codecs:
            self.m_requests.labels("unsupported").inc()
            return error_response(400, "unsupported_codec", f"this server does not decode {frame.codec_id} level "
                                  f"{frame.level}; it serves {sorted(self.codecs)}")
        try:
            deadline = float(request.headers.get("X-Deadline", "inf"))
        except ValueError:
            deadline = math.nan
        if math.isnan(deadline) or (deadline != math.inf and abs(deadline - arrived) > MAX_DEADLINE_OFFSET_S):
            self.m_requests.labels("bad_request").inc()
            return error_response(400, "bad_header", f"X-Deadline must be a unix time in seconds within "
                                  f"{MAX_DEADLINE_OFFSET_S:.0f} s of the server's clock, or inf")
        if len(self.queue) >= self.cfg.max_queue:
            self.m_requests.labels("overloaded").inc()
            return error_response(503, "overloaded",
                                  f"{len(self.queue)} jobs queued, the limit is {self.cfg.max_queue}")
        job = Job(request.headers.get("X-Task-Id", ""), key, body, deadline, arrived)
        # Without a deadline there is no latest start (even when the estimate is infinite too).
        job.latest_start = deadline - self.service_estimate_s(key) if math.isfinite(deadline) else deadline
        if arrived > job.latest_start:
            return self._late(job, "cannot finish by the deadline even if started now")
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        self.queue.push(job)
        if math.isfinite(job.latest_start):
            job.timer = loop.call_later(job.latest_start - arrived, self._expire, job)
        self.m_queue.set(len(self.queue))
        self.wakeup.set()
        return await job.future

    def _answer(self, job: Job, status: str, **fields) -> dict:
        now = time.time()
        self.m_requests.labels(status).inc()
        return {"task_id": job.task_id, "status": status, "codec": job.key[0], "level": job.key[1],
                "received_unix": job.arrived, "answered_unix": now, **fields}

    def _late(self, job: Job, reason: str) -> web.Response:
        return web.json_response(self._answer(job, "late", reason=reason))

    def _expire(self, job: Job) -> None:
        """Timer at the job's latest start: if it is still queued, answer "late" now."""
        if self.queue.expire(job):
            self.m_queue.set(len(self.queue))
            job.future.set_result(self._late(job, "the queue ahead of it left no time"))

    async def set_load(self, request: web.Request) -> web.Response:
        body = await read_bounded(request, 4096)
        if isinstance(body, web.Response):
            return body
        if refused := self.auth.check(request, body):
            return refused
        try:
            available = LoadUpdate.model_validate_json(body).available
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            return error_response(400, "bad_request",
                                  f"expected JSON {{\"available\": fraction in (0, 1]}}: {problems}")
        self.available = available
        self.m_available.set(available)
        return web.json_response({"available": available})

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "name": self.cfg.name, "queue": len(self.queue),
                                  "available": self.available, "codecs": [list(k) for k in sorted(self.codecs)]})

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ---- batching worker -----------------------------------------------------------------------
    def _decode_batch(self, batch: list[Job]) -> list[int | str]:
        return decode_labels(self.codecs[batch[0].key], [job.data for job in batch])

    async def worker(self) -> None:
        while True:
            await self.wakeup.wait()
            head = self.queue.head()
            if head is None:
                self.wakeup.clear()
                continue
            if len(self.queue) < self.cfg.max_batch:
                # Give batch mates a moment to arrive, but never past the head's slack.
                wait = min(self.cfg.max_batch_wait_ms / 1e3, head.latest_start - _START_MARGIN_S - time.time())
                if wait > 0:
                    await asyncio.sleep(wait)
            # Jobs whose latest start has passed are answered late now rather than decoded (their
            # timers may not have fired yet): no compute goes to a job known to be late.
            while (head := self.queue.head()) is not None and head.latest_start < time.time():
                if head.timer is not None:
                    head.timer.cancel()
                self._expire(head)
            if head is None:
                continue
            # A batch's jobs all finish when it does: take only as many as still let the head (the
            # earliest deadline among them) finish in time.
            fits = (head.deadline - time.time()) / max(self.service_estimate_s(head.key), 1e-9)
            limit = max(1, int(min(float(self.cfg.max_batch), fits)))
            batch = self.queue.pop_batch(limit)
            self.m_queue.set(len(self.queue))
            for job in batch:
                if job.timer is not None:
                    job.timer.cancel()
            try:
                await self._run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the worker
                for job in batch:
                    if not job.future.done():
                        self.m_requests.labels("internal_error").inc()
                        job.future.set_result(error_response(500, "internal_error",
                                                             f"decoding the batch failed: {type(exc).__name__}"))

    async def _run_batch(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        started, clock = time.time(), time.perf_counter()
        results = await loop.run_in_executor(self.executor, self._decode_batch, batch)
        computed = time.perf_counter() - clock
        for job in batch:  # decoded: the frames are no longer needed
            job.data = b""
        key, n = batch[0].key, len(batch)
        self.decode_s[key] = (1 - _EMA) * self.decode_s[key] + _EMA * computed / n
        # Emulated compute: the batch holds the server for its FLOPs at the available capacity.
        pacing = self.emulated_s(key, n) - computed
        if pacing > 0:
            await asyncio.sleep(pacing)
        self.m_batch.observe(n)
        service_ms = 1e3 * (time.perf_counter() - clock)
        for job, result in zip(batch, results):
            if isinstance(result, str):
                self.m_requests.labels("malformed").inc()
                job.future.set_result(error_response(400, "malformed_frame", result))
                continue
            self.m_service.observe(time.time() - job.arrived)
            # The estimate can be wrong: say whether this answer still made the deadline.
            met = time.time() <= job.deadline
            if not met:
                self.m_missed.inc()
            timings = {"queue_ms": 1e3 * (started - job.arrived), "compute_ms": 1e3 * computed,
                       "service_ms": service_ms}
            job.future.set_result(web.json_response(self._answer(job, "ok", label=result, batch_size=n,
                                                                 timings=timings, deadline_met=met)))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_request_bytes)
        app.router.add_post("/v1/infer", self.infer)
        app.router.add_put("/v1/load", self.set_load)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/openapi.yaml", openapi)

        async def start_worker(_: web.Application):
            self.wakeup = asyncio.Event()
            task = asyncio.create_task(self.worker())
            yield
            task.cancel()
            self.executor.shutdown(wait=False, cancel_futures=True)

        app.cleanup_ctx.append(start_worker)
        return app


def run_edge_server(cfg: EdgeServerConfig, ready_file: Path | None = None) -> None:
    cfg.auth.secret()  # fail fast: before the model loading
    torch.set_num_threads(cfg.torch_threads)
    server = EdgeServer(cfg, load_served_codecs(cfg.model, cfg.codecs))
    server.warm_up()
    asyncio.run(serve_until_signal(server.app(), cfg.host, cfg.port, ready_file, {"role": "edge", "name": cfg.name}))
