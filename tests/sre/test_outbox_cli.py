"""`rxsm outbox` lists the events Kafka refused for good and each service's outbox set aside:
which event, whose (its key), its size and the reason; nothing of its content."""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from plumbing.database import create_tables, make_engine, session_factory
from plumbing.outbox import OutboxBase, OutboxRow
from rxsm.cli import app

RENEWAL_ID = "5b0e2c1c-8f4e-4a43-9a0e-7d1b7f0c9a11"


async def messaging_outbox_with_one_set_aside(data_dir: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir}/messaging.db")
    await create_tables(engine, OutboxBase)
    now = datetime.now(UTC)
    async with session_factory(engine).begin() as session:
        for event_id, refused in [("e-sent", None), ("e-refused", "event_too_large")]:
            session.add(
                OutboxRow(
                    event_id=event_id,
                    topic="rxsm.sm.drafts.v1",
                    key=RENEWAL_ID.encode(),
                    value=b'{"secret": "PHI-LIKE"}' + b" " * 2_000,
                    headers={"rxsm-event-type": "draft.created"},
                    created_at=now,
                    published_at=now,
                    refused_reason=refused,
                )
            )
    await engine.dispose()


def test_an_sre_sees_what_was_set_aside_and_why(tmp_path: Path) -> None:
    asyncio.run(messaging_outbox_with_one_set_aside(tmp_path))
    runner = CliRunner()
    env = {"RXSM_DATA_DIR": str(tmp_path), "RXSM_DATABASE_URL": ""}

    shown = runner.invoke(app, ["outbox"], env=env)
    listed = runner.invoke(app, ["outbox", "--service", "messaging", "--json"], env=env)

    assert shown.exit_code == 0, shown.output
    assert "e-refused" in shown.output and "event_too_large" in shown.output
    assert "e-sent" not in shown.output
    assert "(no database here)" in shown.output, "the renewal service has no database here"
    assert "1 event(s) set aside" in shown.output
    assert "PHI-LIKE" not in shown.output + listed.output
    [event] = json.loads(listed.output)
    assert (event["service"], event["event_type"], event["key"], event["reason"]) == (
        "messaging",
        "draft.created",
        RENEWAL_ID,
        "event_too_large",
    )
    assert event["size"] == len(b'{"secret": "PHI-LIKE"}') + 2_000
    assert not (tmp_path / "renewal.db").exists(), "reading never creates a database"
