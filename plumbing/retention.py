"""Retention: each service deletes what it no longer needs, on a schedule, and counts it.

What is kept, and for how long (``RXSM_RETENTION_*``, plumbing.settings):

- Published outbox rows: ``RXSM_RETENTION_OUTBOX_DAYS`` (1). Once Kafka acknowledged an event the row
  only helps debugging; Kafka keeps the event itself for its topic's retention. Rows Kafka refused
  (set aside, never published) are kept as long as finished journeys, for the SRE to look into.
- Processed-event ids (the inbox): ``RXSM_RETENTION_INBOX_DAYS`` (31). **The inbox keeps ids at least
  as long as Kafka can redeliver them**: a consumer group can be handed a record again for as long as
  its topic keeps it (a rebalance before a commit, offsets reset or expired, a replay), and an id
  forgotten earlier would let that record take effect twice. The longest retention of a topic rxsm
  consumes (schemas/topics.py) is the dead-letter topic's 30 days (the journey service reads it; the
  others are 7 days, retry topics 7), so the floor is 30 days, the default 31 (a day's margin), and a
  smaller setting is refused at start. Raise it with any topic's retention.
- Finished journeys: ``RXSM_RETENTION_FINISHED_DAYS`` (90). The journey service's renewals that reached
  a closed status (sent, refused, no care team, draft deleted, dead-lettered) with their steps, the
  renewal service's requests refused or closed, and messaging's sent or deleted drafts with their
  sends, counted from when they finished. Three times
  the default window of ``rxsm report`` and ``rxsm failures``; a request repeating a pruned renewal's
  Idempotency-Key makes a new renewal. Open journeys are never deleted.

Every ``RXSM_RETENTION_SWEEP_SECONDS`` (3600) each instance deletes in batches of ``batch`` rows, one
short transaction each, so a large backlog (a first start on an old database) never holds long locks.
Deleted rows are counted on /metrics as ``rxsm_pruned_rows_total{table=...}``.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from opentelemetry.metrics import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.outbox import prune_inbox, prune_outbox
from plumbing.settings import ServiceSettings

log = structlog.get_logger("rxsm.retention")

Delete = Callable[[AsyncSession, datetime, int], Awaitable[Mapping[str, int]]]
"""Deletes up to a batch of rows older than a cutoff in the session's transaction; returns how many
rows it deleted per table."""


@dataclass(frozen=True)
class Rule:
    """Rows of ``tables`` are deleted by ``delete`` once older than ``keep``."""

    tables: tuple[str, ...]
    keep: timedelta
    delete: Delete


def rules(
    settings: ServiceSettings, finished_tables: tuple[str, ...], finished: Delete
) -> list[Rule]:
    """A service's rules: the outbox's and the inbox's, and ``finished`` deleting its finished
    journeys from ``finished_tables``."""
    journeys = timedelta(days=settings.retention_finished_days)
    return [
        Rule(("outbox",), timedelta(days=settings.retention_outbox_days), prune_outbox),
        Rule(("outbox",), journeys, partial(prune_outbox, refused=True)),
        Rule(("processed_events",), timedelta(days=settings.retention_inbox_days), prune_inbox),
        Rule(finished_tables, journeys, finished),
    ]


class Pruner:
    """Applies ``rules`` now (``prune``) or every ``every`` seconds until cancelled (``run``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rules: Sequence[Rule],
        counter: Counter,
        every: float,
        batch: int = 1000,
    ) -> None:
        self._sessions = sessions
        self._rules = rules
        self._counter = counter
        self._every = every
        self._batch = batch
        self.tables = tuple(dict.fromkeys(table for rule in rules for table in rule.tables))
        for table in self.tables:
            counter.add(0, {"table": table})

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """Delete every row past its rule's age at ``now``; returns the rows deleted per table."""
        now = now or datetime.now(UTC)
        pruned = dict.fromkeys(self.tables, 0)
        for rule in self._rules:
            while True:
                async with self._sessions.begin() as session:
                    counts = await rule.delete(session, now - rule.keep, self._batch)
                for table, count in counts.items():
                    pruned[table] += count
                    if count:
                        self._counter.add(count, {"table": table})
                if not any(counts.values()):
                    break
                await asyncio.sleep(0)
        if any(pruned.values()):
            log.info("retention pruned rows", **pruned)
        return pruned

    async def run(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as error:
                log.warning(
                    "retention prune failed; trying again later", error_type=type(error).__name__
                )
            await asyncio.sleep(self._every)
