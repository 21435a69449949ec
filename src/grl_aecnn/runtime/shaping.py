"""Link shaping: an in-process token bucket (always available) and a Linux `tc` path (tbf in one
network namespace per device) that is used when running as root where namespaces work."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable

from grl_aecnn.errors import GrlAecnnError


class ShapingError(GrlAecnnError):
    """A link cannot be shaped as asked (bad rate, tc or namespace failure)."""


class TokenBucket:
    """`rate_bps` bits per second with a depth of `burst_bytes`. `reserve(n)` books n bytes and
    returns how long to wait before they may go; the balance may go negative (a debt paid back at
    the rate), so a chunk bigger than the depth still passes, at the long-run rate. Hence by any
    time t at most burst + rate * (t - t0) bytes have been released."""

    def __init__(self, rate_bps: float, burst_bytes: int, clock: Callable[[], float] = time.monotonic):
        if burst_bytes < 1:
            raise ShapingError(f"burst must be at least 1 byte, got {burst_bytes}")
        self.clock, self.burst = clock, float(burst_bytes)
        self.tokens, self.stamp = self.burst, clock()
        self.rate = self._bytes_per_s(rate_bps)

    @staticmethod
    def _bytes_per_s(rate_bps: float) -> float:
        if not rate_bps > 0:
            raise ShapingError(f"rate must be positive, got {rate_bps} bit/s")
        return rate_bps / 8.0

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def reserve(self, n: int) -> float:
        self._refill()
        self.tokens -= n
        return max(0.0, -self.tokens) / self.rate

    async def consume(self, n: int) -> None:
        delay = self.reserve(n)
        if delay > 0:
            await asyncio.sleep(delay)


async def shaped_chunks(data: bytes, bucket: TokenBucket, chunk_bytes: int) -> AsyncIterator[bytes]:
    """`data` in chunks, each released when the bucket allows it (an HTTP body that trickles out)."""
    for start in range(0, len(data), chunk_bytes):
        piece = data[start:start + chunk_bytes]
        await bucket.consume(len(piece))
        yield piece


def probe_tc() -> tuple[bool, str]:
    """Whether the tc path can work here, and why (not). Creates and deletes one namespace."""
    if os.geteuid() != 0:
        return False, "not running as root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return False, f"missing {' and '.join(missing)}"
    name = f"grlprobe{os.getpid()}"
    try:
        _run(["ip", "netns", "add", name])
        _run(["ip", "netns", "exec", name, "tc", "qdisc", "show"])
    except ShapingError as exc:
        return False, f"network namespaces unusable ({exc})"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return True, "root, ip and tc present, network namespaces work"


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ShapingError(f"{' '.join(cmd)}: {done.stderr.strip() or f'exit {done.returncode}'}")


class NetnsLinks:
    """One network namespace per device, joined to the root namespace by a veth pair; a tbf qdisc
    on the device end shapes everything the device sends (its uplink). Addresses 10.213.x.y/30:
    the root end .1, the device end .2. Edge servers listen on the root end of link 0: Linux
    delivers traffic for any local address arriving on any interface, so every device reaches them
    through its own (shaped) link. Interface names stay within the kernel's 15 characters."""

    def __init__(self, n_devices: int, tag: str):
        if n_devices > 16384:
            raise ShapingError(f"{n_devices} devices do not fit in 10.213.0.0/16 with one /30 each")
        self.n, self.tag = n_devices, tag
        self.created: list[int] = []

    def namespace(self, i: int) -> str:
        return f"grl{self.tag}md{i}"

    def _addr(self, i: int, end: int) -> str:
        base = 4 * i
        return f"10.213.{base // 256}.{base % 256 + end}"

    def root_ip(self, i: int) -> str:
        return self._addr(i, 1)

    def device_ip(self, i: int) -> str:
        return self._addr(i, 2)

    @property
    def server_host(self) -> str:
        return self.root_ip(0)

    def prefix(self, i: int) -> list[str]:
        """Command prefix that runs a process inside device i's namespace."""
        return ["ip", "netns", "exec", self.namespace(i)]

    def setup(self) -> None:
        for i in range(self.n):
            ns, root, dev = self.namespace(i), f"grl{self.tag}r{i}", f"grl{self.tag}d{i}"
            _run(["ip", "netns", "add", ns])
            self.created.append(i)
            inside = self.prefix(i)
            for cmd in (["ip", "link", "add", root, "type", "veth", "peer", "name", dev],
                        ["ip", "link", "set", dev, "netns", ns],
                        ["ip", "addr", "add", f"{self.root_ip(i)}/30", "dev", root],
                        ["ip", "link", "set", root, "up"],
                        [*inside, "ip", "link", "set", "lo", "up"],
                        [*inside, "ip", "addr", "add", f"{self.device_ip(i)}/30", "dev", dev],
                        [*inside, "ip", "link", "set", dev, "up"],
                        [*inside, "ip", "route", "add", "default", "via", self.root_ip(i)],
                        # Unshaped until the first slot sets a rate.
                        [*inside, "tc", "qdisc", "add", "dev", dev, "root", *self._tbf(1e9)]):
                _run(cmd)

    @staticmethod
    def _tbf(rate_bps: float) -> list[str]:
        # burst: one MTU plus headers, as the token bucket; limit: 1 MB of queue, never the bottleneck.
        return ["tbf", "rate", f"{max(8, round(rate_bps))}bit", "burst", "1600", "limit", "1000000"]

    def rate_command(self, i: int, rate_bps: float) -> list[str]:
        return [*self.prefix(i), "tc", "qdisc", "change", "dev", f"grl{self.tag}d{i}", "root", *self._tbf(rate_bps)]

    def teardown(self) -> None:
        """Deleting a namespace deletes its veth end and with it the pair."""
        for i in self.created:
            subprocess.run(["ip", "netns", "del", self.namespace(i)], capture_output=True, check=False)
        self.created.clear()
