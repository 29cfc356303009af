"""``make bench``: one run that measures the raw Kafka limit and the rxsm flow on this machine.

Prints a table and writes bench/results/latest.json. Sizes can be scaled with RXSM_BENCH_SCALE (1.0 by
default; 0.2 for a quick look); RXSM_BENCH_PROFILE=1 also writes a pyinstrument profile per service.
"""

import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import jvm_peak_rss_mb, private_broker
from bench.otlp_sink import OtlpSink
from bench.raw_bench import run_raw
from bench.rxsm_bench import run_flow

RESULTS = Path(__file__).parent / "results"
PARTITIONS = 3
PROFILE = os.environ.get("RXSM_BENCH_PROFILE") == "1"
"""RXSM_BENCH_PROFILE=1 runs each service of the tracing-on run under pyinstrument."""
PROFILES = RESULTS


def scaled(n: int) -> int:
    return max(int(n * float(os.environ.get("RXSM_BENCH_SCALE", "1"))), 20)


def say(text: str) -> None:
    print(text, flush=True)


async def measure(root: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "partitions": PARTITIONS,
    }
    kafka = private_broker(root)
    try:
        os.environ["RXSM_TOPIC_PARTITIONS"] = str(PARTITIONS)
        say(f"broker up at {kafka.bootstrap_servers}; raw 3-hop aiokafka pipeline...")
        results["raw"] = await run_raw(
            kafka.bootstrap_servers, PARTITIONS, scaled(10000), 200, 10, root
        )
        with OtlpSink() as sink:
            say("rxsm flow, tracing on (spans exported over OTLP/HTTP to a local sink)...")
            results["rxsm_tracing_on"] = await run_flow(
                kafka.bootstrap_servers,
                root,
                count=scaled(1000),
                tracing_endpoint=sink.endpoint,
                rate=200,
                seconds=10,
                sends=True,
            )
            results["otlp_bytes_received"] = sink.received_bytes
        say("rxsm flow, tracing off...")
        results["rxsm_tracing_off"] = await run_flow(
            kafka.bootstrap_servers, root, count=scaled(1000), tracing_endpoint=None
        )
        results["broker_peak_rss_mb"] = jvm_peak_rss_mb(kafka.pid)
    finally:
        kafka.stop()

    results["scaling"] = []
    for partitions in (1, 2, 4):
        kafka = private_broker(root)
        try:
            os.environ["RXSM_TOPIC_PARTITIONS"] = str(partitions)
            for instances in (1, 2):
                say(f"scaling: {partitions} partition(s), {instances} care-team instance(s)...")
                with OtlpSink() as sink:
                    run = await run_flow(
                        kafka.bootstrap_servers,
                        root,
                        count=scaled(500),
                        tracing_endpoint=sink.endpoint,
                        instances=instances,
                    )
                results["scaling"].append({"partitions": partitions, "instances": instances, **run})
        finally:
            kafka.stop()
    return results


def ratios(results: dict[str, Any]) -> dict[str, float]:
    raw = results["raw"]["throughput_msg_s"]
    on = results["rxsm_tracing_on"]["throughput_renewals_s"]
    off = results["rxsm_tracing_off"]["throughput_renewals_s"]
    return {
        "rxsm_over_raw": round(on / raw, 3),
        "tracing_overhead": round(1 - on / off, 3) if off else float("nan"),
    }


def table(results: dict[str, Any]) -> str:
    raw, on, off = results["raw"], results["rxsm_tracing_on"], results["rxsm_tracing_off"]
    ratio = results["ratios"]
    lat = on["latency_request_to_draft"]
    sent = on["latency_request_to_sent"]
    rows = [
        ("raw 3-hop aiokafka pipeline", f"{raw['throughput_msg_s']:,.0f} msg/s"),
        (
            "raw latency at 200/s p50 / p99",
            f"{raw['latency_at_rate']['p50_ms']} / {raw['latency_at_rate']['p99_ms']} ms",
        ),
        ("rxsm request -> draft, tracing on", f"{on['throughput_renewals_s']:,.1f} renewals/s"),
        ("rxsm request -> draft, tracing off", f"{off['throughput_renewals_s']:,.1f} renewals/s"),
        ("rxsm / raw (target >= 0.30)", f"{ratio['rxsm_over_raw']:.3f}"),
        ("tracing overhead (target < 10%)", f"{ratio['tracing_overhead']:.1%}"),
        (
            "send path (HTTP send -> message sent)",
            f"{on.get('send_throughput_s', float('nan')):,.1f} sends/s",
        ),
        (
            "request -> draft at 200/s p50/p95/p99/max",
            f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']} / {lat['max_ms']} ms",
        ),
        (
            "request -> sent at 200/s p50/p95/p99/max",
            f"{sent['p50_ms']} / {sent['p95_ms']} / {sent['p99_ms']} / {sent['max_ms']} ms",
        ),
        ("CPU seconds per 1,000 renewals (services)", f"{on['cpu_s_per_1000']}"),
        ("peak RSS per service (MB)", ", ".join(f"{k} {v}" for k, v in on["peak_rss_mb"].items())),
        ("peak RSS broker (MB)", f"{results['broker_peak_rss_mb']}"),
    ]
    rows += [
        (
            f"scaling: {s['partitions']} partition(s) x {s['instances']} instance(s)",
            f"{s['throughput_renewals_s']:,.1f} renewals/s",
        )
        for s in results["scaling"]
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main() -> int:
    started = time.time()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rxsm-bench-") as root:
        results = asyncio.run(measure(Path(root)))
    results["ratios"] = ratios(results)
    results["seconds"] = round(time.time() - started)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    say("")
    say(table(results))
    say(f"\n{results['seconds']} s; figures in {RESULTS / 'latest.json'}")
    return 0
