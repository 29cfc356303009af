"""``make bench``: one run that measures the raw Kafka limit and the rxsm flow on this machine.

Prints a table and writes bench/results/latest.json. Sizes can be scaled with RXSM_BENCH_SCALE (1.0 by
default; 0.2 for a quick look); RXSM_BENCH_PROFILE=1 also profiles each service under load (py-spy).
"""

import asyncio
import json
import os
import platform
import signal
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import uuid4

import localpostgres
from bench.harness import CORES, jvm_peak_rss_mb, private_broker, stop_everything
from bench.ingress_bench import bare_ingress
from bench.otlp_sink import OtlpSink
from bench.raw_bench import run_raw
from bench.rxsm_bench import run_flow

RESULTS = Path(__file__).parent / "results"
PARTITIONS = 3
POSTGRES = localpostgres.installed()
PROFILE = os.environ.get("RXSM_BENCH_PROFILE") == "1"
"""RXSM_BENCH_PROFILE=1 adds a run of the flow with py-spy sampling each service (a run of its own,
so the sampling's cost does not touch the other figures); see bench/profiling.py."""


def scale() -> float:
    return float(os.environ.get("RXSM_BENCH_SCALE", "1"))


def scaled(n: int) -> int:
    return max(int(n * scale()), 20)


def say(text: str) -> None:
    print(text, flush=True)


class Recorder:
    """The run's figures, written to bench/results/latest.json after every phase, so a run that is
    stopped part-way still leaves what it measured."""

    def __init__(self) -> None:
        self.started = time.time()
        self.results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "partitions": PARTITIONS,
            "complete": False,
        }

    def record(self, name: str, figures: Any) -> None:
        self.results[name] = figures
        self.results["seconds"] = round(time.time() - self.started)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(self.results, indent=2) + "\n")
        say(f"  {name} done at {self.results['seconds']} s")


async def measure(root: Path, recorder: Recorder) -> None:
    kafka = private_broker(root)
    try:
        os.environ["RXSM_TOPIC_PARTITIONS"] = str(PARTITIONS)
        say(f"broker up at {kafka.bootstrap_servers}; raw 3-hop aiokafka pipeline...")
        recorder.record(
            "raw",
            await run_raw(
                kafka.bootstrap_servers,
                PARTITIONS,
                scaled(10000),
                200,
                10,
                root,
                broker_pid=kafka.pid,
            ),
        )
        with OtlpSink() as sink:
            say("rxsm flow, tracing on (spans exported over OTLP/HTTP to a local sink)...")
            recorder.record(
                "rxsm_tracing_on",
                await run_flow(
                    kafka.bootstrap_servers,
                    root,
                    count=scaled(1000),
                    tracing_endpoint=sink.endpoint,
                    rate=200,
                    seconds=5 * min(scale(), 1),
                    sends=True,
                    ingress=scaled(2000),
                    broker_pid=kafka.pid,
                ),
            )
            recorder.record("otlp_bytes_received", sink.received_bytes)
        capacity = recorder.results["rxsm_tracing_on"]["throughput_renewals_s"]
        rates = [round(capacity * 0.5, 1), round(capacity * 0.8, 1)]
        say(
            f"raw pipeline's latency at rxsm's 50% and 80% capacity ({rates[0]} and {rates[1]}/s)..."
        )
        raw_again = await run_raw(
            kafka.bootstrap_servers, PARTITIONS, scaled(2000), 200, 2, root, at=rates
        )
        recorder.record("raw_latency_at_rxsm_rates", raw_again["latency_at"])
        say("a bare FastAPI app taking the same HTTP requests...")
        recorder.record("bare_fastapi_ingress", await bare_ingress(scaled(2000), root))
        if PROFILE:
            with OtlpSink() as sink:
                say("rxsm flow sampled by py-spy (tracing on)...")
                recorder.record(
                    "rxsm_profiled",
                    await run_flow(
                        kafka.bootstrap_servers,
                        root,
                        count=scaled(500),
                        tracing_endpoint=sink.endpoint,
                        profile_dir=RESULTS,
                    ),
                )
        say("rxsm flow, tracing off...")
        recorder.record(
            "rxsm_tracing_off",
            await run_flow(
                kafka.bootstrap_servers,
                root,
                count=scaled(1000),
                tracing_endpoint=None,
                ingress=scaled(2000),
                broker_pid=kafka.pid,
            ),
        )
        say("rxsm flow, tracing on and off once more (the machine's noise shows in the pair)...")
        with OtlpSink() as sink:
            again = await run_flow(
                kafka.bootstrap_servers, root, count=scaled(500), tracing_endpoint=sink.endpoint
            )
        recorder.record("rxsm_tracing_on_again", again)
        recorder.record(
            "rxsm_tracing_off_again",
            await run_flow(kafka.bootstrap_servers, root, count=scaled(500), tracing_endpoint=None),
        )
        recorder.record("broker_peak_rss_mb", jvm_peak_rss_mb(kafka.pid))
    finally:
        kafka.stop()

    await measure_scaling(root, recorder)


@dataclass(frozen=True)
class Scaling:
    partitions: int
    instances: int
    storage: str
    """``sqlite``: only the care-team service is scaled (SQLite takes one writer at a time);
    ``postgresql``: every service, the stateful ones sharing a database each."""


SCALING = (
    Scaling(1, 1, "sqlite"),
    Scaling(2, 1, "sqlite"),
    Scaling(4, 1, "sqlite"),
    Scaling(4, 1, "postgresql"),
    Scaling(4, 2, "postgresql"),
)
STATEFUL = ("renewal", "messaging", "journey")


async def measure_scaling(root: Path, recorder: Recorder) -> None:
    """Throughput by partitions and instances, each on a broker of its own; the PostgreSQL runs
    on a throwaway server (skipped, and said so, where PostgreSQL is not installed)."""
    scaling: list[dict[str, Any]] = []
    with ExitStack() as stack:
        postgres = stack.enter_context(localpostgres.postgres_server()) if POSTGRES else None
        for case in SCALING:
            if case.storage == "postgresql" and postgres is None:
                scaling.append({**asdict(case), "skipped": "PostgreSQL is not installed"})
                continue
            say(
                f"scaling: {case.partitions} partition(s), {case.instances} instance(s), {case.storage}"
            )
            urls = None
            if postgres is not None and case.storage == "postgresql":
                names = {service: f"rxsm_bench_{service}_{uuid4().hex[:8]}" for service in STATEFUL}
                urls = {
                    s: await localpostgres.create_database(postgres, n) for s, n in names.items()
                }
            kafka = private_broker(root)
            try:
                os.environ["RXSM_TOPIC_PARTITIONS"] = str(case.partitions)
                with OtlpSink() as sink:
                    run = await run_flow(
                        kafka.bootstrap_servers,
                        root,
                        count=scaled(400),
                        tracing_endpoint=sink.endpoint,
                        instances=case.instances,
                        scaled_services=("careteam", *STATEFUL) if urls else ("careteam",),
                        database_urls=urls,
                    )
            finally:
                kafka.stop()
            scaling.append({**asdict(case), **run})
            recorder.record("scaling", scaling)
    recorder.record("scaling", scaling)


TARGET_OVER_RAW = 0.15
"""Issue 15's throughput target: rxsm's renewals/s at least this share of raw's msg/s."""


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """rxsm / raw, and the tracing overhead, from the mean of each pair of runs."""
    raw = results["raw"]["throughput_msg_s"]

    def mean(*runs: str) -> float:
        return sum(float(results[run]["throughput_renewals_s"]) for run in runs) / len(runs)

    on = mean("rxsm_tracing_on", "rxsm_tracing_on_again")
    off = mean("rxsm_tracing_off", "rxsm_tracing_off_again")
    return {
        "rxsm_over_raw": round(on / raw, 4),
        "tracing_overhead": round(1 - on / off, 3) if off else float("nan"),
        "machine_cpu_ms_per_renewal_at_target": round(CORES * 1000 / (TARGET_OVER_RAW * raw), 2),
    }


def quantiles(figures: dict[str, float]) -> str:
    return " / ".join(str(figures[q]) for q in ("p50_ms", "p95_ms", "p99_ms", "max_ms")) + " ms"


def latency_rows(run: dict[str, Any], raw: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    rate = f"{run['offered_per_s']:g}/s"
    rows = [
        (f"request -> draft at {rate} p50/p95/p99/max", quantiles(run["request_to_draft"])),
    ]
    for q in ("p50", "p99"):
        by_hop = run.get(f"request_to_stage_{q}_ms", {})
        stages = " / ".join(f"{v}" for v in by_hop.values())
        rows.append((f"  {q} by hop at {rate}: requested/teams/draft", f"{stages} ms"))
    if raw is None and "machine_busy_share" in run:
        rows.append((f"  machine busy at {rate}", _share(run["machine_busy_share"])))
    if raw is not None:
        raw_p99 = float(raw["p99_ms"])
        ratio = run["request_to_draft"]["p99_ms"] / raw_p99 if raw_p99 else float("nan")
        rows += [
            (
                f"  raw pipeline's p99 at {rate}; rxsm p99 / raw p99 (target <= 2)",
                f"{raw_p99} ms; {ratio:.2f}",
            ),
            (
                f"  machine busy at {rate}: rxsm / raw",
                f"{_share(run.get('machine_busy_share'))} / {_share(raw.get('machine_busy_share'))}",
            ),
        ]
    return rows


def _share(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.0%}"


def send_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    paced = run.get("sends_at_half_capacity")
    rows = [
        (
            "send path flat out (HTTP send, 16 at a time)",
            f"{run.get('send_throughput_s', float('nan')):,.1f} sends/s",
        )
    ]
    if paced:
        rate = f"{paced['offered_per_s']:g}/s"
        rows += [
            (f"send -> answer at {rate} p50/p95/p99/max", quantiles(paced["send_to_answer"])),
            (
                f"send -> message.sent at {rate} p50/p95/p99/max",
                quantiles(paced["send_to_message_sent"]),
            ),
        ]
    return rows


def _per_service(run: dict[str, Any]) -> str:
    by_service = run["cpu_s_per_1000_by_service"]
    return f"{run['cpu_s_per_1000']} (" + ", ".join(f"{k} {v}" for k, v in by_service.items()) + ")"


def _ingress(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "not measured"
    return (
        f"{figures['requests_s']:,.0f} req/s, {figures['cpu_ms_per_request']} CPU-ms per request, "
        f"{figures['requests_s_per_core']:,.0f} req/s per core"
        + (f" ({figures['failures']} failed)" if figures.get("failures") else "")
    )


def raw_at(results: dict[str, Any], which: int) -> dict[str, Any] | None:
    """The raw pipeline's latency at rxsm's 50% (0) or 80% (1) capacity, measured in the same run."""
    at = list(results.get("raw_latency_at_rxsm_rates", {}).values())
    return at[which] if len(at) > which else None


def _budget(
    raw: dict[str, Any], on: dict[str, Any], ratio: dict[str, Any]
) -> list[tuple[str, str]]:
    """Where the machine's CPU goes flat out, raw against rxsm, beside what the target allows."""
    per_record = raw.get("cpu_ms_per_record_flat_out")
    if not per_record or "broker_cpu_ms_per_renewal" not in on:
        return []
    return [
        (
            "raw flat out, CPU-ms per record: hops / broker / whole machine",
            f"{per_record['hops']} / {per_record['broker']} / {per_record['machine']}",
        ),
        (
            "rxsm flat out, tracing on, CPU-ms per renewal: services / broker / whole machine",
            f"{on['cpu_s_per_1000']} / {on['broker_cpu_ms_per_renewal']} / "
            f"{on['machine_cpu_ms_per_renewal']}",
        ),
        (
            f"whole machine's CPU-ms per renewal at {TARGET_OVER_RAW:g} of raw ({CORES} cores)",
            f"{ratio['machine_cpu_ms_per_renewal_at_target']}",
        ),
    ]


def table(results: dict[str, Any]) -> str:
    raw, on = results["raw"], results["rxsm_tracing_on"]
    ratio = results["ratios"]

    def pair(run: str) -> str:
        first, second = results[run], results[f"{run}_again"]
        return (
            f"{first['throughput_renewals_s']:,.1f} and {second['throughput_renewals_s']:,.1f}"
            " renewals/s"
        )

    rows = [
        ("raw 3-hop aiokafka pipeline", f"{raw['throughput_msg_s']:,.0f} msg/s"),
        (
            "raw latency at 200/s p50 / p99",
            f"{raw['latency_at_rate']['p50_ms']} / {raw['latency_at_rate']['p99_ms']} ms",
        ),
        ("rxsm request -> draft, tracing on", pair("rxsm_tracing_on")),
        ("rxsm request -> draft, tracing off", pair("rxsm_tracing_off")),
        (
            f"rxsm / raw, tracing on (target >= {TARGET_OVER_RAW:g})",
            f"{ratio['rxsm_over_raw']:.4f}",
        ),
        ("tracing overhead (target < 10%)", f"{ratio['tracing_overhead']:.1%}"),
        *send_rows(on),
        *latency_rows(on["latency_at_offered_rate"]),
        *_budget(raw, on, ratio),
        *latency_rows(on["latency_at_half_capacity"], raw_at(results, 0)),
        *latency_rows(on["latency_at_80pct_capacity"], raw_at(results, 1)),
        ("CPU-ms per renewal, tracing on (target <= 5)", _per_service(on)),
        ("  again", _per_service(results["rxsm_tracing_on_again"])),
        (
            "CPU-ms per renewal, tracing off (target <= 3)",
            _per_service(results["rxsm_tracing_off"]),
        ),
        ("  again", _per_service(results["rxsm_tracing_off_again"])),
        (
            "idle CPU per service, tracing on (ms per second)",
            ", ".join(f"{k} {v}" for k, v in on.get("idle_cpu_ms_per_s_by_service", {}).items()),
        ),
        ("HTTP ingress, tracing on (target >= 300/core)", _ingress(on.get("http_ingress"))),
        (
            "HTTP ingress, tracing off",
            _ingress(results["rxsm_tracing_off"].get("http_ingress")),
        ),
        ("bare FastAPI app, same requests", _ingress(results.get("bare_fastapi_ingress"))),
        (
            "spans dropped (target 0)",
            ", ".join(
                f"{run} {sum(results[run].get('spans_dropped', {}).values()):g}"
                for run in ("rxsm_tracing_on", "rxsm_tracing_on_again")
            ),
        ),
        ("peak RSS per service (MB)", ", ".join(f"{k} {v}" for k, v in on["peak_rss_mb"].items())),
        ("peak RSS broker (MB)", f"{results['broker_peak_rss_mb']}"),
    ]
    rows += [
        (
            f"scaling: {s['partitions']} partition(s) x {s['instances']} instance(s), {s['storage']}",
            s.get("skipped") or f"{s['throughput_renewals_s']:,.1f} renewals/s",
        )
        for s in results["scaling"]
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    """Measure, then print the table. Interrupted (Ctrl-C, SIGTERM) or failed, the bench stops
    every process and broker it started before it exits."""
    signal.signal(signal.SIGTERM, _terminated)
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="rxsm-bench-") as root:
        try:
            asyncio.run(measure(Path(root), recorder))
        finally:
            stop_everything()
    recorder.record("ratios", ratios(recorder.results))
    recorder.record("complete", True)
    say("")
    say(table(recorder.results))
    say(f"\n{recorder.results['seconds']} s; figures in {RESULTS / 'latest.json'}")
    return 0
