"""The four services' HTTP APIs in this process, on databases of their own, without a broker.

No lifespan runs: the tables are created here, and the events the services stage stay in their
outboxes (``journey_reads_outbox`` hands the renewal service's to the journey, as Kafka would).
Enough to drive every HTTP endpoint, including the ones that write.
"""

import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from plumbing.database import create_tables, make_engine
from plumbing.flags import DEFAULT_FILE as DEFAULT_FLAGS_FILE
from plumbing.flags import FeatureFlags
from plumbing.outbox import OutboxBase, OutboxRow
from plumbing.settings import ServiceSettings
from schemas.events import CareTeamsResolved, Event, RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr
from services.careteam import handlers as careteam
from services.careteam.app import create_app as careteam_app
from services.journey import handlers as journey
from services.journey.adapters.ledger import Base as JourneyBase
from services.journey.app import create_app as journey_app
from services.journey.entrypoints import JOURNEY_EVENT
from services.messaging import handlers as messaging
from services.messaging.adapters.storage import Base as MessagingBase
from services.messaging.app import create_app as messaging_app
from services.renewal.adapters.ledger import Base as RenewalBase
from services.renewal.app import create_app as renewal_app

UNREACHABLE_BROKER = "127.0.0.1:9"


@dataclass
class HttpServices:
    renewal: httpx.AsyncClient
    careteam: httpx.AsyncClient
    messaging: httpx.AsyncClient
    journey: httpx.AsyncClient
    apps: dict[str, FastAPI]

    async def journey_reads_outbox(self) -> None:
        """The journey records every event the renewal service has staged so far, as it would
        once the relay put them on Kafka (again: its inbox skips what it has seen)."""
        async with self.apps["renewal"].state.sessions() as session:
            rows = await session.scalars(select(OutboxRow).order_by(OutboxRow.id))
            events = [JOURNEY_EVENT.validate_json(row.value) for row in rows]
        await journey.record_steps(events, self.apps["journey"].state.sessions)

    async def renewal_draft(self, request: dict[str, Any]) -> CareTeamsResolved:
        """A renewal resolved by the care-team service and prefilled by the messaging service."""
        body = RenewalRequest.model_validate(request)
        requested = RenewalRequested(
            renewal_id=uuid4(),
            veteran_id=body.veteranId,
            ehr=Ehr.VISTA,
            prescription=body.prescription,
            vista_stations=[f.stationNumber for f in body.facilities],
        )
        published: list[Event] = []

        async def capture(event: Event) -> None:
            published.append(event)

        deps = replace(self.apps["careteam"].state.careteam, publish=capture)
        outcome = await careteam.resolve_for_renewal(requested, deps, date.today())
        assert isinstance(outcome, CareTeamsResolved), outcome
        await messaging.create_renewal_draft(outcome, self.apps["messaging"].state.messaging)
        return outcome


@asynccontextmanager
async def http_services(root: Path) -> AsyncIterator[HttpServices]:
    """The services' apps on SQLite files under ``root``, each behind an in-process client."""
    flags_file = root / "flags.json"
    shutil.copy(DEFAULT_FLAGS_FILE, flags_file)
    settings = ServiceSettings(
        kafka_bootstrap_servers=UNREACHABLE_BROKER, data_dir=str(root), flags_file=flags_file
    )
    for service, bases in (
        ("renewal", (RenewalBase, OutboxBase)),
        ("messaging", (MessagingBase, OutboxBase)),
        ("journey", (JourneyBase, OutboxBase)),
    ):
        engine = make_engine(settings.database_url_for(service))
        for base in bases:
            await create_tables(engine, base)
        await engine.dispose()
    apps = {
        "renewal": renewal_app(settings),
        "careteam": careteam_app(settings),
        "messaging": messaging_app(settings),
        "journey": journey_app(settings),
    }
    async with AsyncExitStack() as stack:
        for app in apps.values():
            flags = getattr(app.state, "flags", None)
            if isinstance(flags, FeatureFlags):
                stack.callback(flags.close)
        clients = {
            name: await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            )
            for name, app in apps.items()
        }
        yield HttpServices(**clients, apps=apps)
