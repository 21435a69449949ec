"""Runtime configs (YAML, validated with pydantic). Units are in the field names; every default is
documented in docs/runtime.md and in configs/runtime/*.yaml."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from grl_aecnn.config import StrictModel
from grl_aecnn.errors import ConfigError

TOKEN_ENV = "GRL_AECNN_TOKEN"


class AuthConfig(StrictModel):
    """Every /v1 request is authenticated. `bearer`: `Authorization: Bearer <token>`. `hmac`:
    `Authorization: GRL-HMAC-SHA256 ts=<unix s>, sig=<hex>` over timestamp, method, path and body
    (the secret never crosses the wire). The secret comes from the environment variable `token_env`
    unless `token` is set in the file (convenient for tests, not for deployments)."""

    scheme: Literal["bearer", "hmac"] = "bearer"
    token_env: str = TOKEN_ENV
    token: str | None = None
    max_clock_skew_s: float = Field(30.0, gt=0)  # hmac: accepted |now - ts|

    def secret(self) -> str:
        secret = self.token if self.token is not None else os.environ.get(self.token_env)
        if not secret:
            raise ConfigError(f"no auth secret: set the environment variable {self.token_env} or auth.token")
        if len(secret) < 16:
            raise ConfigError("the auth secret must have at least 16 characters")
        return secret


class EdgeServerConfig(StrictModel):
    name: str = "es0"
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0: an ephemeral port, reported in the ready file
    model: str = "resnet20-cifar10"  # zoo backbone whose codec levels are served
    codecs: tuple[str, ...] = ("aecnn",)  # registry names (grl_aecnn.codecs.CODECS)
    capacity_flops: float = Field(50e9, gt=0)  # emulated FLOP/s at full availability (scenario edge.capacity_flops)
    available: float = Field(1.0, gt=0, le=1)  # initial available fraction; the testbed sets it each slot
    max_batch: int = Field(8, ge=1)  # tasks decoded in one batch
    max_batch_wait_ms: float = Field(2.0, ge=0)  # how long a lone task waits for batch mates (never past its slack)
    max_queue: int = Field(256, ge=1)  # queued tasks beyond this are refused with 503
    max_request_bytes: int = Field(1 << 20, ge=64)  # larger bodies are refused with 413
    torch_threads: int = Field(1, ge=1)
    auth: AuthConfig = AuthConfig()


class DeviceConfig(StrictModel):
    name: str = "md0"
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    model: str = "resnet20-cifar10"
    codecs: tuple[str, ...] = ("aecnn",)
    dataset: str = "cifar10"
    images: int = Field(200, ge=1)  # ImageSet.take(images) of the test split; task samples index into it
    chunk_bytes: int = Field(256, ge=1)  # upload granularity of the in-process token bucket
    burst_bytes: int = Field(1500, ge=1)  # token-bucket depth (one Ethernet MTU)
    torch_threads: int = Field(1, ge=1)
    auth: AuthConfig = AuthConfig()


class ServerKill(StrictModel):
    """Fault injection: edge server `es` is killed (SIGKILL) right after the orders of slot `slot`
    went out, so that slot's tasks for it are in flight. Nobody tells the devices or the
    controller: they find out from refused connections (docs/runtime.md, Faults)."""

    es: int = Field(ge=0)
    slot: int = Field(ge=0)


class TestbedConfig(StrictModel):
    __test__ = False  # not a pytest class

    model: str = "resnet20-cifar10"
    codecs: tuple[str, ...] = ("aecnn",)  # offloading options: every shipped level of these (byte) codecs
    images: int = Field(200, ge=1)  # test images (of the model's dataset) behind the option profile and the tasks
    shaping: Literal["auto", "tc", "token_bucket"] = "auto"  # auto: tc when root and netns work, else token bucket
    startup_timeout_s: float = Field(300.0, gt=0)  # for every process to report ready
    result_grace_s: float = Field(1.0, ge=0)  # how long past its deadline a task's result is awaited
    # Templates: the testbed sets name, port, model, codecs, capacity and auth of each process.
    server: EdgeServerConfig = EdgeServerConfig()
    device: DeviceConfig = DeviceConfig()
    auth: AuthConfig = AuthConfig()  # the testbed draws a fresh secret per run and hands it over in token_env
    kill: ServerKill | None = None  # fault test: kill one server mid-run
    # Real seconds per emulated second: slots, deadlines, device and server speeds and link rates are
    # all stretched by it, and measured times divided by it, so a busy host's real compute fits in the
    # emulated budgets (1: real time).
    time_scale: float = Field(1.0, ge=1.0)
