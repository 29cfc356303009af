"""Writes grafana/dashboards/rxsm.json, the release plan's dashboard: ``python -m observability.build_dashboard``.

Panels: the renewal funnel (requested -> care team resolved -> drafted -> sent), error rate by owning tool,
draft and send latency, drafts created / updated / deleted and messages sent by status, the care-system
picker shown, consumer lag and dead letters, and each service's HTTP latency by route (OpenTelemetry's
stable ``http.server.request.duration``, in seconds). The flow's panels can be filtered by EHR and by
rollout cohort.
"""

import json
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).parent / "grafana" / "dashboards" / "rxsm.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
FUNNEL_JOBS = 'job=~"journey|renewal"'
"""Who counts the funnel: the journey service, once per renewal and step, and the renewal service its
intake's stalls (a request whose event never reached Kafka, which the journey never sees). The
care-team service counts its own outcomes too, and is left out so nothing is counted twice."""
FILTER = f'{FUNNEL_JOBS}, ehr=~"$ehr", cohort=~"$cohort"'


def panel(
    panel_id: int,
    title: str,
    kind: str,
    x: int,
    y: int,
    w: int,
    h: int,
    *exprs: tuple[str, str],
    unit: str = "short",
    no_value: str | None = None,
) -> dict[str, Any]:
    """A panel; ``no_value`` is shown instead of "No data" where a series may not exist yet."""
    defaults: dict[str, Any] = {"unit": unit}
    if no_value is not None:
        defaults["noValue"] = no_value
    return {
        "id": panel_id,
        "title": title,
        "type": kind,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def variable(name: str, label: str, metric_label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": f"label_values(rxsm_renewals_total, {metric_label})",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


def dashboard() -> dict[str, Any]:
    rate = "[$__rate_interval]"
    panels = [
        panel(
            1,
            "Renewal funnel: requested -> care team -> drafted -> sent",
            "bargauge",
            0,
            0,
            12,
            8,
            (f"sum by (step) (increase(rxsm_renewals_total{{{FILTER}}}[$__range]))", "{{step}}"),
        ),
        panel(
            2,
            "Error rate by owning tool (Meds or SM; the journey service is neither)",
            "timeseries",
            12,
            0,
            12,
            8,
            (
                f'sum by (tool) (rate(rxsm_renewals_total{{outcome="failure", {FILTER}}}{rate}))'
                f' / ignoring(tool) group_left sum(rate(rxsm_renewals_total{{step="requested", {FILTER}}}{rate}))',
                "{{tool}}",
            ),
            unit="percentunit",
        ),
        panel(
            3,
            "Error rate: new flow against base",
            "timeseries",
            0,
            8,
            12,
            8,
            (
                f'sum by (cohort) (rate(rxsm_renewals_total{{{FUNNEL_JOBS}, outcome="failure", ehr=~"$ehr"}}{rate}))'
                f' / sum by (cohort) (rate(rxsm_renewals_total{{{FUNNEL_JOBS}, step="requested", ehr=~"$ehr"}}{rate}))',
                "{{cohort}}",
            ),
            unit="percentunit",
        ),
        panel(
            4,
            "Latency - drafts / send message (p95)",
            "timeseries",
            12,
            8,
            12,
            8,
            (
                f"histogram_quantile(0.95, sum by (le) (rate(rxsm_draft_duration_seconds_bucket{rate})))",
                "draft p95",
            ),
            (
                f"histogram_quantile(0.95, sum by (le) (rate(rxsm_send_duration_seconds_bucket{rate})))",
                "send p95",
            ),
            unit="s",
        ),
        panel(
            5,
            "New drafts created, by status",
            "timeseries",
            0,
            16,
            6,
            8,
            (f"sum by (status) (rate(rxsm_drafts_created_total{rate}))", "{{status}}"),
        ),
        panel(
            6,
            "Drafts updated, by status",
            "timeseries",
            6,
            16,
            6,
            8,
            (f"sum by (status) (rate(rxsm_drafts_updated_total{rate}))", "{{status}}"),
        ),
        panel(
            7,
            "Drafts deleted, by status",
            "timeseries",
            12,
            16,
            6,
            8,
            (f"sum by (status) (rate(rxsm_drafts_deleted_total{rate}))", "{{status}}"),
        ),
        panel(
            8,
            "Messages sent, by status",
            "timeseries",
            18,
            16,
            6,
            8,
            (f"sum by (status, ehr) (rate(rxsm_messages_sent_total{rate}))", "{{status}} {{ehr}}"),
        ),
        panel(
            9,
            "Care-system picker shown",
            "piechart",
            0,
            24,
            8,
            8,
            ("sum by (kind) (increase(rxsm_care_system_picker_shown_total[$__range]))", "{{kind}}"),
        ),
        panel(
            10,
            "Consumer lag by topic",
            "timeseries",
            8,
            24,
            8,
            8,
            ("sum by (consumer_group, topic) (rxsm_consumer_lag)", "{{consumer_group}} {{topic}}"),
        ),
        panel(
            11,
            "Dead letters by tool",
            "timeseries",
            16,
            24,
            8,
            8,
            (
                f"sum by (tool, topic) (increase(rxsm_dead_letters_total{rate}))",
                "{{tool}} {{topic}}",
            ),
            no_value="0",  # a letter is labelled by its exception's type: none before the first
        ),
        panel(
            12,
            "HTTP latency by service and route (p95)",
            "timeseries",
            0,
            32,
            24,
            8,
            (
                "histogram_quantile(0.95, sum by (job, http_route, le)"
                f" (rate(http_server_request_duration_seconds_bucket{rate})))",
                "{{job}} {{http_route}}",
            ),
            unit="s",
        ),
    ]
    return {
        "uid": "rxsm-renewal-flow",
        "title": "rxsm: Meds -> SM renewal flow",
        "tags": ["rxsm", "secure-messaging", "medications"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [variable("ehr", "EHR", "ehr"), variable("cohort", "Cohort", "cohort")]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


if __name__ == "__main__":
    DASHBOARD.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {DASHBOARD}")
