"""Measuring the raw 3-hop aiokafka pipeline on a private broker."""

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench.harness import CORES, CpuWindow, Latency, Proc, collect, create_topics, feed, spawn
from bench.raw_pipeline import record


async def run_raw(
    bootstrap: str,
    partitions: int,
    count: int,
    rate: float,
    seconds: float,
    logs: Path,
    at: Sequence[float] = (),
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """Throughput flat out, latency at ``rate``/s, and (``latency_at``) at each rate of ``at``; the
    CPU per record flat out of the hops, the broker (``broker_pid``) and the whole machine, and the
    share of the machine busy at each rate of ``at``."""
    run = uuid4().hex[:6]
    names = [f"bench.raw.{run}.{hop}" for hop in range(4)]
    await create_topics(bootstrap, names, partitions)
    hops: list[Proc] = [
        spawn(
            f"raw-hop-{i}",
            [
                "-m",
                "bench.raw_pipeline",
                "hop",
                bootstrap,
                names[i],
                names[i + 1],
                f"bench-raw-{run}-{i}",
            ],
            log=logs / f"raw-hop-{i}.log",
        )
        for i in range(3)
    ]
    try:
        latency = Latency()

        def seen(_: str, value: dict[str, Any], now: float) -> int:
            latency.samples.append((now * 1e9 - value["fed_ns"]) / 1e6)
            return 1

        def make(index: int) -> tuple[bytes, bytes]:
            return str(index % 997).encode(), record(index)

        warm = asyncio.create_task(collect(bootstrap, [names[3]], 300, seen))
        await asyncio.sleep(1)
        await feed(bootstrap, names[0], 300, make)
        await warm

        latency.samples.clear()
        sink = asyncio.create_task(collect(bootstrap, [names[3]], count, seen))
        await asyncio.sleep(1)
        window = CpuWindow(hops, broker_pid)
        started = await feed(bootstrap, names[0], count, make)
        finished = await sink
        used = window.used()
        throughput = count / (finished - started)
        flat_out = {
            "hops": round(sum(used.by_process.values()) / count * 1000, 3),
            "broker": None if used.broker is None else round(used.broker / count * 1000, 3),
            "machine": round(used.machine / count * 1000, 3),
        }

        latency = Latency()
        fixed = int(rate * seconds)
        sink = asyncio.create_task(collect(bootstrap, [names[3]], fixed, seen))
        await asyncio.sleep(1)
        await feed(bootstrap, names[0], fixed, make, rate=rate)
        await sink
        latency_at_rate = latency.summary()
        cpu = sum(hop.cpu_seconds() for hop in hops)
        at_rates = {}
        for other in at:
            latency = Latency()
            fixed = max(int(other * seconds), 20)
            sink = asyncio.create_task(collect(bootstrap, [names[3]], fixed, seen))
            await asyncio.sleep(1)
            window = CpuWindow([])
            await feed(bootstrap, names[0], fixed, make, rate=other)
            await sink
            used = window.used()
            at_rates[f"{other:g}"] = {
                **latency.summary(),
                "machine_busy_share": round(used.machine / (used.seconds * CORES), 3),
            }
        return {
            "throughput_msg_s": round(throughput, 1),
            "cpu_ms_per_record_flat_out": flat_out,
            "latency_at_rate": latency_at_rate,
            "latency_at": at_rates,
            "peak_rss_mb": {hop.name: hop.peak_rss_mb() for hop in hops},
            "cpu_s_total": round(cpu, 2),
        }
    finally:
        for hop in hops:
            hop.stop(grace=10)


if __name__ == "__main__":
    import sys

    print(json.dumps(asyncio.run(run_raw(sys.argv[1], 3, 20000, 200, 10, Path("/tmp"))), indent=2))
