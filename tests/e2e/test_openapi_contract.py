"""Each service's OpenAPI document, checked by schemathesis against the service as it runs.

Each service of the flow is served on a port by uvicorn, with the options ``rxsm serve`` uses, and
schemathesis' CLI runs its phases on the service's /openapi.json: examples, coverage, fuzzing, and
stateful testing along the OpenAPI links, a bounded number of cases per operation and a fixed seed.
Its checks: no answer is a server error, and each has a documented status, content type, headers and
body. Any failure fails the test, with schemathesis' report.

The messaging service's links chain a draft: created, then read, edited, deleted or sent. Only a
create answer holds a draft's id, so an edit, delete or send of a draft that exists proves the chain
ran; the test counts them on the service's own metrics.
"""

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plumbing.auth import AuthSettings, issue_service_token, issue_token
from rxsm.serve import SERVICES
from tests.contracts.schemathesis_hooks import RECIPIENT_ENV, VETERAN_ENV
from tests.e2e.conftest import Flow
from tests.support import served_on_a_port

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
MAX_EXAMPLES = 25
SEED = 20261130
RUN_TIMEOUT_SECONDS = 300

VETERAN = "1012853550V207686"
"""A demo Veteran (services/careteam/data/demo_directory.json) who may message Cheyenne's (442)
team ``RECIPIENT``; a renewal of a Cheyenne prescription reaches that team."""
RECIPIENT = 1013156

SERVICE_TOKEN = {"renewal", "journey"}
"""Services called with the Medications app's service token; the others with the Veteran's."""


def authorization(service: str) -> str:
    settings = AuthSettings()
    if service in SERVICE_TOKEN:
        return f"Bearer {issue_service_token(settings, ttl=timedelta(hours=1))}"
    return f"Bearer {issue_token(VETERAN, settings)}"


async def schemathesis(url: str, service: str, workdir: Path) -> tuple[int, str]:
    """Run schemathesis' CLI on the service at ``url`` from ``workdir`` (where it keeps its cache):
    its exit code and report."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.contracts.schemathesis_hooks",
        RECIPIENT_ENV: str(RECIPIENT),
        VETERAN_ENV: VETERAN,
        "NO_COLOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--header",
        f"Authorization: {authorization(service)}",
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT_SECONDS):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def counted(flow: Flow, metric: str, status: str) -> float:
    """The messaging service's ``metric`` counter summed over its series of ``status``."""
    response = await flow.messaging.get("/metrics")
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == f"{metric}_total" and sample.labels.get("status") == status
    )


CHAINED = [
    ("rxsm_drafts_updated", "200"),
    ("rxsm_drafts_deleted", "204"),
    ("rxsm_messages_sent", "200"),
]
"""What a Veteran does with a draft that exists, and the status of doing it."""


@pytest.mark.parametrize("service", list(SERVICES))
async def test_schemathesis_finds_the_service_as_its_openapi_document_says(
    flow: Flow, service: str, tmp_path: Path
) -> None:
    before = [await counted(flow, metric, status) for metric, status in CHAINED]
    async with served_on_a_port(flow.apps[service]) as url:
        code, report = await schemathesis(url, service, tmp_path)
    assert code == 0, report
    if service == "messaging":
        after = [await counted(flow, metric, status) for metric, status in CHAINED]
        chained = {metric: a - b for (metric, _), a, b in zip(CHAINED, after, before, strict=True)}
        assert all(count > 0 for count in chained.values()), (chained, report)
