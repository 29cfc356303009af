"""The four services (renewal, careteam, messaging, journey) running in this process against the real
broker, sharing one span exporter."""

import io
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing.auth import AuthSettings, issue_service_token
from plumbing.flags import DEFAULT_FILE as DEFAULT_FLAGS_FILE
from plumbing.flags import FlagFile
from plumbing.logs import configure_logging
from plumbing.settings import ServiceSettings
from services.careteam.app import create_app as careteam_app
from services.journey.app import JourneySettings
from services.journey.app import create_app as journey_app
from services.messaging.app import create_app as messaging_app
from services.renewal.app import RenewalSettings
from services.renewal.app import create_app as renewal_app
from services.renewal.entrypoints import IDENTITY as RENEWAL

MEDICATIONS_APP = {
    "Authorization": f"Bearer {issue_service_token(AuthSettings(), ttl=timedelta(days=1))}"
}
"""The renewal service's client calls as the Medications app, with its service token."""

STALL_AFTER_SECONDS = 3.0
"""The stall timeout in these tests: the journey's, and the renewal intake's for an event that does
not reach Kafka."""

MESSAGING_DATABASE_URL = os.environ.get("RXSM_TEST_DATABASE_URL")
"""Where the messaging service keeps its drafts when set (CI: a throwaway PostgreSQL), else SQLite."""


@dataclass
class Flow:
    bootstrap: str
    renewal: httpx.AsyncClient
    careteam: httpx.AsyncClient
    messaging: httpx.AsyncClient
    journey: httpx.AsyncClient
    """The journey service's client, with a service token (an SRE tool's)."""
    spans: InMemorySpanExporter
    log_stream: io.StringIO
    apps: dict[str, FastAPI]
    flags: FlagFile
    """The services' flag file (a copy of config/flags.json); changes reach them within a second."""

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_stream.getvalue().splitlines() if line]


@pytest.fixture(scope="session")
async def flow(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Flow]:
    data_dir: Path = tmp_path_factory.mktemp("services")
    flags = FlagFile(data_dir / "flags.json")
    shutil.copy(DEFAULT_FLAGS_FILE, flags.path)
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        data_dir=str(data_dir),
        retry_backoff_seconds=0.01,
        flags_file=flags.path,
    )
    renewal_settings = RenewalSettings(
        **settings.model_dump(),
        stall_after_seconds=STALL_AFTER_SECONDS,
        stall_sweep_seconds=0.2,
    )
    journey_settings = JourneySettings(
        **settings.model_dump(),
        stall_after_seconds=STALL_AFTER_SECONDS,
        stall_sweep_seconds=0.2,
    )
    spans = InMemorySpanExporter()
    apps = {
        "renewal": renewal_app(renewal_settings, spans),
        "careteam": careteam_app(settings, spans),
        "messaging": messaging_app(
            settings.model_copy(update={"database_url": MESSAGING_DATABASE_URL}), spans
        ),
        "journey": journey_app(journey_settings, spans),
    }
    log_stream = io.StringIO()
    configure_logging(RENEWAL, "INFO", stream=log_stream)
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            manager = await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
            transport = httpx.ASGITransport(app=manager.app)
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=transport,
                    base_url=f"http://{name}",
                    headers=MEDICATIONS_APP if name in ("renewal", "journey") else None,
                )
            )
        yield Flow(
            kafka_bootstrap, **clients, spans=spans, log_stream=log_stream, apps=apps, flags=flags
        )
