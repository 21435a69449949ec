"""Load generator for one edge server (bench/runtime_load.py, bench/runtime.py, tests): concurrent
aiohttp clients, each with its own connection, send real frames until a request count or a time
limit is reached, and every answer is counted by outcome."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter

import aiohttp
import numpy as np

from grl_aecnn.codecs import Codec
from grl_aecnn.data import ImageSet, to_tensor
from grl_aecnn.runtime.auth import authorization

INFER_PATH = "/v1/infer"


def encode_frames(codecs: list[Codec], images: ImageSet) -> list[bytes]:
    """Every image encoded by every codec level, interleaved (image 0 at each level, image 1, ...)."""
    x = to_tensor(images.images, images.mean, images.std)
    return [codec.encode(x[i]) for i in range(len(images)) for codec in codecs]


def outcome(http_status: int, answer: dict) -> str:
    """'ok' or 'late' for a 200, else "http_<code>:<error>" (the documented error kinds)."""
    if http_status == 200:
        return str(answer.get("status"))
    return f"http_{http_status}:{answer.get('error')}"


async def _client(url: str, frames: list[bytes], scheme: str, secret: str, deadline_ms: float | None,
                  tickets: itertools.count, n_requests: int, stop_at: float, request_timeout_s: float,
                  counts: Counter, latencies: list[float], batch_sizes: list[int]) -> None:
    # One connection per client: the server sees `clients` concurrent peers.
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout) as session:
        while (ticket := next(tickets)) < n_requests and time.monotonic() < stop_at:
            frame = frames[ticket % len(frames)]
            headers = {"Content-Type": "application/octet-stream", "X-Task-Id": str(ticket)}
            if deadline_ms is not None:
                headers["X-Deadline"] = f"{time.time() + deadline_ms / 1e3:.6f}"
            headers["Authorization"] = authorization(scheme, secret, "POST", INFER_PATH, frame, headers=headers)
            start = time.perf_counter()
            try:
                async with session.post(url + INFER_PATH, data=frame, headers=headers) as response:
                    answer = await response.json(content_type=None)
                    status = outcome(response.status, answer)
            except (asyncio.TimeoutError, aiohttp.ClientError, ValueError) as exc:
                status = f"error:{type(exc).__name__}"
            else:
                if status == "ok":
                    batch_sizes.append(answer["batch_size"])
            latencies.append(time.perf_counter() - start)
            counts[status] += 1


async def run_load(url: str, frames: list[bytes], scheme: str, secret: str, n_requests: int, clients: int,
                   deadline_ms: float | None = None, max_s: float = 600.0, request_timeout_s: float = 30.0) -> dict:
    """Send up to `n_requests` frames (cycled) from `clients` concurrent clients; no new request
    starts after `max_s`. Returns counts per outcome, throughput and client-side latency
    percentiles (ms, over every answered request, late ones included)."""
    if not frames or n_requests < 1 or clients < 1:
        raise ValueError("run_load needs frames, n_requests >= 1 and clients >= 1")
    counts: Counter = Counter()
    latencies: list[float] = []
    batch_sizes: list[int] = []
    tickets = itertools.count()
    start = time.monotonic()
    await asyncio.gather(*(_client(url, frames, scheme, secret, deadline_ms, tickets, n_requests, start + max_s,
                                   request_timeout_s, counts, latencies, batch_sizes) for _ in range(clients)))
    wall_s = time.monotonic() - start
    sent = sum(counts.values())
    ms = 1e3 * np.asarray(latencies)
    pct = lambda q: float(np.percentile(ms, q)) if len(ms) else math.nan  # noqa: E731
    return {"requests": n_requests, "sent": sent, "clients": clients, "deadline_ms": deadline_ms,
            "wall_s": wall_s, "stopped_by_time_limit": sent < n_requests,
            "counts": dict(sorted(counts.items())),
            "unexpected": {k: v for k, v in counts.items() if k not in ("ok", "late")},
            "throughput_per_s": sent / wall_s, "ok_per_s": counts["ok"] / wall_s,
            "latency_ms": {"p50": pct(50), "p99": pct(99), "max": float(ms.max()) if len(ms) else math.nan},
            "mean_batch_size": float(np.mean(batch_sizes)) if batch_sizes else math.nan}
