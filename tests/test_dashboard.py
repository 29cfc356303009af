"""The Grafana dashboard is valid, current, charts only metrics the services export, and has data to
show from a service's start."""

import json
import re
from pathlib import Path
from typing import Any

import httpx
import yaml

from observability.build_dashboard import DASHBOARD, dashboard
from plumbing.metrics import FLOW_SERIES, ServiceMetrics
from rxsm.serve import SERVICES
from services.careteam.config import IDENTITY as CARETEAM
from services.journey.domain import Step, outcome_of
from services.journey.entrypoints import IDENTITY as JOURNEY
from services.messaging.settings import IDENTITY as MESSAGING
from services.renewal.entrypoints import IDENTITY as RENEWAL
from tests.test_promtool import record_every_instrument, service_metrics_app

ROOT = Path(__file__).resolve().parent.parent
METRIC = re.compile(r"\b((?:rxsm|http_server)_[a-z_]+)")


async def exported_metric_names() -> set[str]:
    """What a service's /metrics names once it has served a request and counted everything."""
    app, metrics = service_metrics_app(MESSAGING)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
        await c.get("/health")
        record_every_instrument(metrics)
        text = (await c.get("/metrics")).text
    metrics.shutdown()
    return set(re.findall(r"^((?:rxsm|http)_[a-z_]+)", text, re.MULTILINE))


def fresh_series(identity_name: str) -> set[str]:
    """The series names a just-started service exports, before any event or request."""
    identity = {
        "renewal": RENEWAL,
        "careteam": CARETEAM,
        "messaging": MESSAGING,
        "journey": JOURNEY,
    }[identity_name]
    metrics = ServiceMetrics(identity)
    text = metrics.prometheus_text().decode()
    metrics.shutdown()
    return set(re.findall(r"^(rxsm_[a-z_]+)\{", text, re.MULTILINE))


def charted(panel: dict[str, Any]) -> set[str]:
    return {name for target in panel["targets"] for name in METRIC.findall(target["expr"])}


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert json.loads(DASHBOARD.read_text()) == dashboard(), (
        "run python -m observability.build_dashboard"
    )


def test_the_dashboard_is_well_formed_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "bargauge", "piechart", "stat", "table"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])


async def test_every_charted_metric_is_exported() -> None:
    exported = await exported_metric_names()
    every_charted = set().union(*(charted(panel) for panel in dashboard()["panels"]))
    assert "http_server_request_duration_seconds_bucket" in every_charted
    assert every_charted <= exported, every_charted - exported


def test_no_panel_says_no_data_before_the_first_event() -> None:
    """A panel's counters are exported at zero by a just-started service (the one its ``job`` names),
    or the panel shows a value for no data. Not the measurements: consumer lag (once the consumers
    hold partitions, seconds after start) and latencies, which exist from the first timed call."""
    fresh = {name: fresh_series(name) for name in SERVICES}
    measured_later = {
        "rxsm_consumer_lag",
        "rxsm_draft_duration_seconds_bucket",
        "rxsm_send_duration_seconds_bucket",
        "http_server_request_duration_seconds_bucket",
    }
    empty = {}
    for panel in dashboard()["panels"]:
        if "noValue" in panel["fieldConfig"]["defaults"]:
            continue
        jobs = set(re.findall(r'job="([a-z]+)"', str(panel["targets"]))) or set(SERVICES)
        exported = set().union(*(fresh[job] for job in jobs))
        missing = charted(panel) - measured_later - exported
        if missing:
            empty[panel["title"]] = missing
    assert empty == {}


def test_the_draft_and_send_panels_start_at_zero_for_each_ehr_and_cohort() -> None:
    metrics = ServiceMetrics(MESSAGING)
    text = metrics.prometheus_text().decode()
    metrics.shutdown()
    for name, status in (
        ("rxsm_drafts_created_total", "201"),
        ("rxsm_drafts_updated_total", "200"),
        ("rxsm_drafts_deleted_total", "204"),
        ("rxsm_messages_sent_total", "200"),
    ):
        for ehr in ("vista", "oracle_health"):
            for cohort in ("new", "base"):
                line = f'{name}{{cohort="{cohort}",ehr="{ehr}",status="{status}"}} 0.0'
                assert line in text.splitlines(), line


def test_the_series_started_at_zero_are_steps_the_journey_counts() -> None:
    """The funnel's zero series name renewal steps with the outcome the journey service counts them
    with (services/journey/domain.py), so the first real count adds to them rather than beside
    them; the renewal service's are its intake's stalls, a failure of meds."""
    seeded = [
        labels for service in ("journey", "careteam") for labels in FLOW_SERIES[service]["renewals"]
    ]
    assert {labels["step"] for labels in seeded} >= {"requested", "message_sent"}
    for labels in seeded:
        assert labels["outcome"] == outcome_of(Step(labels["step"])), labels
    for labels in FLOW_SERIES["renewal"]["renewals"]:
        assert (labels["step"], labels["outcome"], labels["tool"]) == ("stalled", "failure", "meds")
    every_tool = {
        labels["tool"] for service in FLOW_SERIES.values() for labels in service.get("renewals", [])
    }
    assert every_tool <= {"meds", "sm"}, "no step is ever the journey service's own"


def test_compose_provisions_the_dashboard_and_scrapes_every_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./observability/grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    scrape = yaml.safe_load((ROOT / "observability/prometheus/prometheus.yml").read_text())
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in scrape["scrape_configs"]
    }
    assert jobs == {name: [f"{name}:{service.port}"] for name, service in SERVICES.items()}


def test_the_funnel_reads_the_journey_and_the_intake_only() -> None:
    """The care-team service counts its own outcomes too; the funnel must not add them twice."""
    funnel = [panel for panel in dashboard()["panels"] if "rxsm_renewals_total" in str(panel)]
    assert funnel
    for panel in funnel:
        for target in panel["targets"]:
            assert target["expr"].count("rxsm_renewals_total{") == target["expr"].count(
                'job=~"journey|renewal"'
            )
