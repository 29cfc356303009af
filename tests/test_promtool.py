"""Prometheus' own tool, promtool, accepts rxsm's scrape config and every service's /metrics.

``promtool check metrics`` is Prometheus' linter for exposition text (client_golang's promlint: base
units such as seconds, ``_total`` on counters, help text, snake_case, no type in a name, ...);
``promtool check config`` validates the scrape config compose mounts. ``bash observability/promtool.sh
install`` installs promtool. Without it these tests skip, unless ``RXSM_REQUIRE_TOOLS`` is set (CI),
which makes its absence a failure. The services' /metrics after a real flow: tests/e2e/test_promtool.py.
"""

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from plumbing.broker import make_broker
from plumbing.http import service_app
from plumbing.identity import ServiceIdentity
from plumbing.metrics import ServiceMetrics
from plumbing.settings import ServiceSettings
from services.careteam.config import IDENTITY as CARETEAM
from services.journey.entrypoints import IDENTITY as JOURNEY
from services.messaging.settings import IDENTITY as MESSAGING
from services.renewal.entrypoints import IDENTITY as RENEWAL

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "observability" / "prometheus"
INSTALL = "bash observability/promtool.sh install"


def promtool() -> str:
    """The promtool to run: ``PROMTOOL``, else the one on PATH."""
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    if os.environ.get("RXSM_REQUIRE_TOOLS"):
        pytest.fail(f"promtool is required (RXSM_REQUIRE_TOOLS is set) but missing: {INSTALL}")
    pytest.skip(f"promtool is not installed ({INSTALL}); RXSM_REQUIRE_TOOLS makes this a failure")


def promtool_complaints(*args: str, text: str | None = None) -> str:
    """What ``promtool <args>`` objects to (stdin: ``text``): empty when it accepts and says nothing
    but its success line."""
    done = subprocess.run(
        [promtool(), *args], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    said = "\n".join(
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and not line.startswith("Checking ") and "SUCCESS" not in line
    )
    if done.returncode != 0:
        return said or f"promtool {' '.join(args)} exited {done.returncode}"
    return said


def test_promtool_refuses_what_the_old_metrics_had() -> None:
    """The check is not vacuous: the legacy HTTP histogram in milliseconds, as every service exported
    it before, is refused for its unit."""
    legacy = (
        "# HELP http_server_duration_milliseconds Measures the duration of inbound HTTP requests.\n"
        "# TYPE http_server_duration_milliseconds histogram\n"
        'http_server_duration_milliseconds_bucket{le="+Inf"} 1.0\n'
        "http_server_duration_milliseconds_count 1.0\n"
        "http_server_duration_milliseconds_sum 3.0\n"
    )
    assert 'base unit "seconds"' in promtool_complaints("check", "metrics", text=legacy)


def test_the_prometheus_config_passes_promtool() -> None:
    assert promtool_complaints("check", "config", str(PROMETHEUS / "prometheus.yml")) == ""


def service_metrics_app(identity: ServiceIdentity) -> tuple[FastAPI, ServiceMetrics]:
    """plumbing's app for ``identity`` (its /metrics and HTTP instrumentation) and its metrics; not
    started, so it needs no broker."""
    settings = ServiceSettings()
    tracing = TracerProvider()
    metrics = ServiceMetrics(identity)
    broker = make_broker(identity, settings, tracing)
    app = service_app(
        identity, settings, broker, tracing, title="t", description="d", metrics=metrics
    )
    return app, metrics


def record_every_instrument(metrics: ServiceMetrics) -> None:
    """One count or observation on each of the flow's instruments, labelled as the services do."""
    labels = {"ehr": "vista", "cohort": "new", "status": "200"}
    for counter in (
        metrics.drafts_created,
        metrics.drafts_updated,
        metrics.drafts_deleted,
        metrics.messages_sent,
    ):
        counter.add(1, labels)
    latency = {**labels, "step": "message.send", "source": "http"}
    metrics.draft_latency.record(0.02, latency)
    metrics.send_latency.record(0.3, latency)
    metrics.renewals.add(
        1,
        {
            "step": "requested",
            "outcome": "success",
            "tool": "meds",
            "ehr": "vista",
            "cohort": "new",
        },
    )
    metrics.picker_shown.add(1, {"kind": "auto", "cohort": "new", "flow": "renewal"})
    metrics.dead_letters.add(
        1,
        {
            "tool": "sm",
            "consumer_group": "rxsm-messaging",
            "topic": "t",
            "error_type": "ValueError",
        },
    )
    metrics.lag.values[("rxsm-messaging", "t", 0)] = 2


@pytest.mark.parametrize("identity", [RENEWAL, CARETEAM, MESSAGING, JOURNEY], ids=lambda i: i.name)
async def test_a_service_app_serves_metrics_promtool_accepts(identity: ServiceIdentity) -> None:
    """The /metrics of plumbing's service app, before any event and after requests and every
    instrument recorded once (no broker: the app is not started)."""
    app, metrics = service_metrics_app(identity)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as client:
        fresh = (await client.get("/metrics")).text
        assert promtool_complaints("check", "metrics", text=fresh) == ""
        await client.get("/health")
        await client.post("/health", content=b"{}")
        record_every_instrument(metrics)
        used = (await client.get("/metrics")).text
    metrics.shutdown()
    assert "http_server_request_duration_seconds_bucket" in used
    assert "milliseconds" not in used
    assert promtool_complaints("check", "metrics", text=used) == ""
