"""Building blocks of a benchmark run: a private broker, feeding, collecting, process costs."""

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from localkafka import LocalKafka, free_port
from plumbing.topics import ensure_topics


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


@dataclass
class Latency:
    """Milliseconds from a record being fed to its outcome being seen."""

    samples: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(percentile(self.samples, 0.50), 1),
            "p95_ms": round(percentile(self.samples, 0.95), 1),
            "p99_ms": round(percentile(self.samples, 0.99), 1),
            "max_ms": round(max(self.samples, default=float("nan")), 1),
            "mean_ms": round(statistics.fmean(self.samples), 1) if self.samples else float("nan"),
            "n": len(self.samples),
        }


RUNNING: list["Proc | LocalKafka"] = []
"""Every process and broker the bench started, so that ``stop_everything`` ends whatever an
interrupted or failed run left behind."""


def stop_everything() -> None:
    """Stop what the bench started and is still running: the processes, then the brokers."""
    for started in reversed(RUNNING):
        if isinstance(started, Proc):
            started.stop()
    for started in RUNNING:
        if isinstance(started, LocalKafka):
            started.stop()
    RUNNING.clear()


def private_broker(root: Path) -> LocalKafka:
    kafka = LocalKafka(port=free_port(), data_dir=root / f"kafka-{uuid4().hex[:6]}")
    RUNNING.append(kafka)
    kafka.start()
    return kafka


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    await ensure_topics(bootstrap, partitions, names)


async def feed(
    bootstrap: str,
    topic: str,
    count: int,
    make: Callable[[int], tuple[bytes, bytes]],
    rate: float | None = None,
) -> float:
    """Produce ``count`` (key, value) records from ``make``, flat out or at ``rate``/s.

    Returns the start time. Sends are pipelined; at a fixed rate each record is sent when due.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    started = time.time()
    try:
        sends = []
        for index in range(count):
            if rate and (delay := started + index / rate - time.time()) > 0:
                await asyncio.sleep(delay)
            key, value = make(index)
            sends.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return started


async def collect(
    bootstrap: str,
    topic_names: list[str],
    expected: int,
    on_record: Callable[[str, dict[str, Any], float], int],
    within: float = 300,
    settled: Callable[[], int] = lambda: 0,
) -> float:
    """Read topics (from now on) until ``on_record`` counted ``expected`` outcomes; returns the time.

    ``on_record`` returns how many outcomes a record completes (0, 1, or more when it releases
    outcomes that arrived before it); ``settled`` counts outcomes settled outside Kafka (a failed
    send), so the wait ends once every record has an outcome either way."""
    consumer = AIOKafkaConsumer(
        *topic_names,
        bootstrap_servers=bootstrap,
        group_id=f"bench-sink-{uuid4().hex[:6]}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        max_poll_records=2000,
        fetch_max_wait_ms=20,  # as the raw pipeline's hops: the sink adds no wait of its own
    )
    await consumer.start()
    while not consumer.assignment():  # noqa: ASYNC110 (the group join has no event to await)
        await asyncio.sleep(0.05)
    for partition in consumer.assignment():
        await consumer.position(partition)
    accepted = 0
    deadline = time.time() + within
    try:
        while accepted + settled() < expected:
            if time.time() > deadline:
                raise TimeoutError(f"saw {accepted} (+{settled()} settled) of {expected}")
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for tp, records in batches.items():
                for record in records:
                    accepted += on_record(tp.topic, json.loads(record.value), now)
        return time.time()
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far (from /proc, in 10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used so far, on all cores (/proc/stat: all
    time but idle and iowait; steal counts, since another guest had the core)."""
    times = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = times[3], times[4]
    return (sum(times[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


CORES = os.cpu_count() or 1


@dataclass
class Proc:
    """A child process and its costs, read from /proc."""

    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def stop(self, grace: float = 60) -> None:
        """Stop gracefully (uvicorn shuts down on SIGINT as on SIGTERM); killed after ``grace`` s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class Used:
    """CPU seconds used over a window: by each process watched, by the broker (None when not
    watched), by the whole machine; and the window's length on the clock."""

    by_process: dict[str, float]
    broker: float | None
    machine: float
    seconds: float


class CpuWindow:
    """CPU used between ``start`` and ``used`` by ``procs``, the broker's process and the machine."""

    def __init__(self, procs: list[Proc], broker_pid: int | None = None) -> None:
        self.procs, self.broker_pid = procs, broker_pid
        self.start()

    def _now(self) -> Used:
        return Used(
            {proc.name: proc.cpu_seconds() for proc in self.procs},
            cpu_seconds(self.broker_pid) if self.broker_pid else None,
            machine_busy_seconds(),
            time.monotonic(),
        )

    def start(self) -> None:
        self.before = self._now()

    def used(self) -> Used:
        now, before = self._now(), self.before
        return Used(
            {name: now.by_process[name] - before.by_process[name] for name in now.by_process},
            None if now.broker is None or before.broker is None else now.broker - before.broker,
            now.machine - before.machine,
            now.seconds - before.seconds,
        )


def spawn(
    name: str, args: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Proc:
    out = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    proc = Proc(name, process)
    RUNNING.append(proc)
    return proc


async def wait_until_healthy(proc: Proc, port: int, deadline: float) -> None:
    """``proc`` answering ``GET /health`` on ``port`` before ``deadline`` (``time.monotonic``); its
    exit ends the wait at once."""
    async with httpx.AsyncClient(timeout=1) as http:
        while True:
            if (code := proc.process.poll()) is not None:
                raise RuntimeError(f"{proc.name} exited with code {code} before it was healthy")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not answer /health in time")
            await asyncio.sleep(0.3)


def jvm_peak_rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")
