"""The device process (`grl-aecnn device`): holds real test images, and for each task order from
the controller runs either the whole backbone locally, or the head and the encoder of the chosen
codec level and sends the bytes to the chosen edge server through a link shaped to the order's
rate. Compute speed is emulated: a computation takes at least its FLOPs / the order's FLOP/s."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import aiohttp
import torch
from aiohttp import web
from pydantic import Field, ValidationError, model_validator

from grl_aecnn.codecs import Codec
from grl_aecnn.config import StrictModel
from grl_aecnn.data import ImageSet, load_dataset, to_tensor
from grl_aecnn.nets import SplitNet, count_flops
from grl_aecnn.runtime.auth import authorization
from grl_aecnn.runtime.config import DeviceConfig
from grl_aecnn.runtime.service import Authenticator, error_response, openapi, read_bounded, serve_until_signal
from grl_aecnn.runtime.server import load_served_codecs
from grl_aecnn.runtime.shaping import TokenBucket, shaped_chunks
from grl_aecnn.zoo import load_backbone


class TaskOrder(StrictModel):
    """One task, as the controller sends it to POST /v1/task. Times are unix seconds."""

    task_id: str
    sample: int = Field(ge=0)  # index into the device's ImageSet.take(images)
    start_unix: float  # when the task arose: latencies are measured from here
    deadline_unix: float
    device_flops_per_s: float = Field(gt=0)  # emulated device speed
    mode: Literal["local", "offload"]
    server_url: str | None = None
    codec: str | None = None
    level: int | None = None
    rate_bps: float | None = Field(None, gt=0)  # uplink rate for this slot
    shaping: Literal["token_bucket", "external"] = "token_bucket"  # external: the kernel (tc) shapes the link
    wait_s: float = Field(1.0, ge=0)  # how long past the deadline a server answer is still awaited

    @model_validator(mode="after")
    def _offload_fields(self):
        if self.mode == "offload" and None in (self.server_url, self.codec, self.level, self.rate_bps):
            raise ValueError("an offload order needs server_url, codec, level and rate_bps")
        return self


class Device:
    def __init__(self, cfg: DeviceConfig, images: ImageSet, backbone: SplitNet, codecs: dict[tuple[str, int], Codec]):
        self.cfg, self.images, self.backbone, self.codecs = cfg, images, backbone, codecs
        self.auth = Authenticator(cfg.auth)
        self.local_flops = count_flops(backbone, torch.zeros(1, *backbone.input_shape))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute")
        self.session: aiohttp.ClientSession | None = None

    def _compute(self, order: TaskOrder) -> int | bytes:
        """Local: the predicted label. Offload: the frame to send."""
        image = to_tensor(self.images.images[order.sample:order.sample + 1], self.images.mean, self.images.std)[0]
        with torch.no_grad():
            if order.mode == "local":
                return int(self.backbone(image[None])[0].argmax())
            return self.codecs[(order.codec, order.level)].encode(image)

    async def run(self, order: TaskOrder) -> dict:
        flops = self.local_flops if order.mode == "local" else self.codecs[(order.codec, order.level)].device_flops
        started = time.time()
        out = await asyncio.get_running_loop().run_in_executor(self.executor, self._compute, order)
        # Emulated device: the computation lasts at least its FLOPs at the device's speed.
        pacing = flops / order.device_flops_per_s - (time.time() - started)
        if pacing > 0:
            await asyncio.sleep(pacing)
        computed = time.time()
        result = {"task_id": order.task_id, "sample": order.sample, "true_label": int(self.images.labels[order.sample]),
                  "t_device_ms": 1e3 * (computed - order.start_unix), "t_upload_ms": 0.0, "t_server_ms": 0.0,
                  "payload_bytes": 0, "device_flops": flops}
        if order.mode == "local":
            return {**result, "status": "ok", "label": out, "latency_ms": 1e3 * (computed - order.start_unix)}
        answer = await self._offload(order, out)
        if answer["status"] == "unreachable":
            return await self._fall_back(order, result, answer["reason"])
        done = time.time()
        result.update(payload_bytes=len(out), latency_ms=1e3 * (done - order.start_unix), status=answer["status"],
                      label=answer.get("label"), server=answer)
        if "received_unix" in answer:  # same host, same clock: the upload ends when the server has the body
            result.update(t_upload_ms=1e3 * (answer["received_unix"] - computed),
                          t_server_ms=1e3 * (done - answer["received_unix"]))
        return result

    async def _fall_back(self, order: TaskOrder, result: dict, reason: str) -> dict:
        """The server could not be reached (refused or dropped connection: it is down): the task
        runs locally after all, so it still gets a label, late or not."""
        local = await self.run(order.model_copy(update={"mode": "local"}))
        return {**local, "status": "fallback_local", "device_flops": result["device_flops"] + local["device_flops"],
                "fallback": {"server_url": order.server_url, "reason": reason}}

    async def _offload(self, order: TaskOrder, data: bytes) -> dict:
        path = "/v1/infer"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                   "X-Task-Id": order.task_id, "X-Deadline": f"{order.deadline_unix:.6f}"}
        headers["Authorization"] = authorization(self.auth.scheme, self.auth.secret, "POST", path, data, headers=headers)
        body = data
        if order.shaping == "token_bucket":
            body = shaped_chunks(data, TokenBucket(order.rate_bps, self.cfg.burst_bytes), self.cfg.chunk_bytes)
        timeout = order.deadline_unix + order.wait_s - time.time()
        if timeout <= 0:  # aiohttp reads a timeout of 0 as none at all
            return {"status": "timeout", "reason": "no time left to send before the deadline"}
        try:
            async with self.session.post(order.server_url + path, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                answer = await response.json(content_type=None)
                if response.status != 200:
                    return {"status": f"http_{response.status}", **answer}
                return answer
        except asyncio.TimeoutError as exc:  # first: aiohttp's timeout errors are connection errors too
            return {"status": "timeout", "reason": repr(exc)}
        except aiohttp.ClientConnectionError as exc:  # refused, reset or dropped: the server is gone
            return {"status": "unreachable", "reason": repr(exc)}
        except (aiohttp.ClientError, json.JSONDecodeError) as exc:
            return {"status": "error", "reason": repr(exc)}

    # ---- HTTP ----------------------------------------------------------------------------------
    async def task(self, request: web.Request) -> web.Response:
        body = await read_bounded(request, 1 << 16)
        if isinstance(body, web.Response):
            return body
        if refused := self.auth.check(request, body):
            return refused
        try:
            order = TaskOrder.model_validate_json(body)
        except ValidationError as exc:
            return error_response(400, "bad_order", str(exc))
        if not order.sample < len(self.images):
            return error_response(400, "bad_order", f"sample {order.sample}; this device holds {len(self.images)}")
        if order.mode == "offload" and (order.codec, order.level) not in self.codecs:
            return error_response(400, "bad_order", f"no encoder for {order.codec} level {order.level}")
        return web.json_response(await self.run(order))

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "name": self.cfg.name, "images": len(self.images),
                                  "dataset_checksum": self.images.checksum})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 16)
        app.router.add_post("/v1/task", self.task)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/openapi.yaml", openapi)

        async def client_session(_: web.Application):
            self.session = aiohttp.ClientSession()
            yield
            await self.session.close()
            self.executor.shutdown(wait=False, cancel_futures=True)

        app.cleanup_ctx.append(client_session)
        return app


def run_device(cfg: DeviceConfig, ready_file: Path | None = None) -> None:
    cfg.auth.secret()  # fail fast: before the model and data loading
    torch.set_num_threads(cfg.torch_threads)
    images = load_dataset(cfg.dataset, "test").take(cfg.images)
    device = Device(cfg, images, load_backbone(cfg.model), load_served_codecs(cfg.model, cfg.codecs))
    asyncio.run(serve_until_signal(device.app(), cfg.host, cfg.port, ready_file,
                                   {"role": "device", "name": cfg.name, "dataset_checksum": images.checksum}))
