"""``rxsm``: the command line of the renewal flow (run a service; look into the flow as an SRE).

Each command imports what it needs (Kafka clients, HTTP, the services' models) when it runs, so
``rxsm --help`` and ``rxsm --version`` answer at once.
"""

import asyncio
import functools
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from plumbing.flags import FlagFile
    from plumbing.identity import ServiceIdentity
    from rxsm.journeys import Journey, LedgerClient
    from rxsm.report import Report

app = typer.Typer(
    help="rxsm: medication renewal requests to Secure Messaging.", no_args_is_help=True
)
dlq = typer.Typer(help="Dead letters: records no consumer could process.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
flags_app = typer.Typer(help="Per-Veteran feature flags (the release plans' rollout).")
app.add_typer(flags_app, name="flags")
db_app = typer.Typer(help="The services' database schemas (migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
PIPED_WIDTH = 1_000
console = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
"""Piped (to grep, a file, a ticket), tables keep full names and ids rather than folding at 80 columns."""


def table(*headers: str) -> Table:
    """A table whose cells fold onto more lines on a narrow terminal: names and ids are never cut."""
    found = Table()
    for header in headers:
        found.add_column(header, overflow="fold")
    return found


def default_bootstrap() -> str:
    from plumbing.settings import ServiceSettings

    return ServiceSettings().kafka_bootstrap_servers


Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers.",
        default_factory=default_bootstrap,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def print_version(asked: bool) -> None:
    if not asked:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"rxsm {version('rxsm')}")
    except PackageNotFoundError:
        typer.echo("rxsm (not installed: run it with `uv run rxsm`)")
    raise typer.Exit()


@app.callback()
def rxsm(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Medication renewal requests from the Medications tool to Secure Messaging."""


def cli_identity() -> "ServiceIdentity":
    from plumbing.identity import ServiceIdentity
    from schemas.vocabulary import Tool

    return ServiceIdentity("cli", Tool.SM)


Params = ParamSpec("Params")
Returned = TypeVar("Returned")


def logged(command: Callable[Params, Returned]) -> Callable[Params, Returned]:
    """Run ``command`` with the CLI's logging (JSON on stderr, warnings and worse) set up: once the
    command line is parsed, so ``--help`` does not pay for it."""

    @functools.wraps(command)
    def run(*args: Params.args, **kwargs: Params.kwargs) -> Returned:
        from plumbing.logs import configure_logging

        configure_logging(cli_identity(), "WARNING", stream=sys.stderr)
        return command(*args, **kwargs)

    return run


class Service(StrEnum):
    renewal = "renewal"
    careteam = "careteam"
    messaging = "messaging"
    journey = "journey"


@app.command(name="serve")
@logged
def serve_command(service: Service) -> None:
    """Run one service (HTTP API and Kafka consumers) in the foreground."""
    from rxsm.serve import serve

    serve(service.value)


@app.command()
@logged
def asyncapi(
    out: Annotated[Path, typer.Option(help="Where to write one JSON document per service.")] = Path(
        "docs/asyncapi"
    ),
) -> None:
    """Write each service's AsyncAPI document, as ``faststream docs gen --factory
    services.<name>.app:asyncapi_app`` does; Kafka's address is its server's variable, by default
    KAFKA_BOOTSTRAP_SERVERS."""
    from rxsm.asyncapi import write

    for path in write(out):
        console.print(f"wrote {path}")


@app.command()
@logged
def topics(
    bootstrap: Bootstrap,
    group: Annotated[
        str, typer.Option("--group", help="Only the groups whose name starts with this.")
    ] = "",
    as_json: AsJson = False,
) -> None:
    """Every consumer group: state, members, and per partition the committed offset, end and lag.

    Groups that have committed nothing yet are listed too: committed "-", lag counted from the start.
    """
    from rxsm.kafka_reads import consumer_groups

    groups = asyncio.run(consumer_groups(bootstrap, group))
    if as_json:
        unread = {"topic": None, "partition": None, "committed": None, "end": None, "lag": None}
        print_json(
            [
                {"group": found.group, "state": found.state, "members": found.members, **read}
                for found in groups
                for read in [{**vars(p), "lag": p.lag} for p in found.partitions] or [unread]
            ]
        )
        return
    shown = table(
        "consumer group", "state", "members", "topic", "partition", "committed", "end", "lag"
    )
    for found in groups:
        described = (found.group, found.state, str(found.members))
        if not found.partitions:
            shown.add_row(*described, "-", "-", "-", "-", "-")
        for partition in found.partitions:
            shown.add_row(
                *described,
                partition.topic,
                str(partition.partition),
                "-" if partition.committed is None else str(partition.committed),
                str(partition.end),
                str(partition.lag),
                style="bold red" if partition.lag else "",
            )
    console.print(shown)
    console.print(f"{len(groups)} consumer group(s)")


@dlq.command(name="list")
@logged
def dlq_list(bootstrap: Bootstrap, as_json: AsJson = False) -> None:
    """Every dead letter: when, which service (and tool) refused it, from where, and why."""
    from rxsm import deadletters

    letters, replays = asyncio.run(deadletters.dead_letters_and_replays(bootstrap))
    if as_json:
        print_json(
            [
                {
                    **letter.model_dump(mode="json", exclude={"value", "key"}),
                    "replayed_at": [f"{at.isoformat()}" for at in replays.get(letter.event_id, [])],
                }
                for letter in letters
            ]
        )
        return
    shown = table(
        "id", "when (UTC)", "tool", "service", "from", "error", "reason", "tries", "replayed"
    )
    for letter in letters:
        replayed = replays.get(letter.event_id, [])
        shown.add_row(
            str(letter.event_id),
            f"{letter.occurred_at:%Y-%m-%d %H:%M:%S}",
            str(letter.tool),
            letter.service,
            f"{letter.topic}[{letter.partition}]@{letter.offset}",
            letter.error_type,
            letter.reason
            + (f" (refused {len(letter.history)}x before)" if letter.replayed else ""),
            str(letter.attempts),
            f"{max(replayed):%Y-%m-%d %H:%M:%S}" if replayed else "",
        )
    console.print(shown)
    console.print(f"{len(letters)} dead letter(s)")


@dlq.command(name="show")
@logged
def dlq_show(
    letter_id: str,
    bootstrap: Bootstrap,
    payload: Annotated[
        bool, typer.Option(help="Also print the original value (may hold PHI).")
    ] = False,
) -> None:
    """One dead letter in full."""
    import base64

    from rxsm import deadletters

    letter = asyncio.run(deadletters.find(bootstrap, letter_id))
    if letter is None:
        raise typer.BadParameter(f"no dead letter with id {letter_id}", param_hint="LETTER_ID")
    shown = letter.model_dump(mode="json", exclude=set() if payload else {"value"})
    if payload:
        shown["value"] = base64.b64decode(letter.value).decode("utf-8", "replace")
    print_json(shown)


@dlq.command(name="replay")
@logged
def dlq_replay(
    bootstrap: Bootstrap,
    letter_ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids.")] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    service: Annotated[str | None, typer.Option(help="Only letters this service refused.")] = None,
) -> None:
    """Put dead letters back on the retry topic of the consumer group that refused them."""
    from rxsm import deadletters

    letters = asyncio.run(deadletters.dead_letters(bootstrap))
    if not all_letters:
        if not letter_ids:
            raise typer.BadParameter("name dead letter ids, or pass --all")
        letters = [letter for letter in letters if str(letter.event_id) in letter_ids]
        missing = set(letter_ids) - {str(letter.event_id) for letter in letters}
        if missing:
            raise typer.BadParameter(f"no dead letter with id {', '.join(sorted(missing))}")
    if service:
        letters = [letter for letter in letters if letter.service == service]
    try:
        sent = asyncio.run(deadletters.replay(bootstrap, letters))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    for letter, topic in zip(letters, sent, strict=True):
        console.print(f"replayed {letter.event_id} -> {topic}")
    console.print(f"{len(sent)} dead letter(s) replayed")


FlagsFile = Annotated[
    Path | None,
    typer.Option(
        "--file",
        envvar="RXSM_FLAGS_FILE",
        help="The flagd JSON file.",
        show_default="config/flags.json",
    ),
]


def flag_file(file: Path | None) -> "FlagFile":
    from plumbing.flags import DEFAULT_FILE, FlagFile

    return FlagFile(file or DEFAULT_FILE)


@flags_app.callback(invoke_without_command=True)
@logged
def flags_show(ctx: typer.Context, file: FlagsFile = None, as_json: AsJson = False) -> None:
    """The current rollout of every flag."""
    if ctx.invoked_subcommand is not None:
        return
    rollouts = flag_file(file).read()
    if as_json:
        print_json({name: vars(rollout) for name, rollout in rollouts.items()})
        return
    shown = table("flag", "state", "percentage", "allow-list", "changed by", "at")
    for name, rollout in rollouts.items():
        shown.add_row(
            name,
            "[bold red]KILLED[/]" if rollout.killed else "on",
            f"{rollout.percentage}%",
            str(len(rollout.allow)),
            rollout.updated_by or "",
            rollout.updated_at or "",
        )
    console.print(shown)


@flags_app.command(name="set")
@logged
def flags_set(
    flag: Annotated[str, typer.Argument(help="The flag's name (`rxsm flags` lists them).")],
    file: FlagsFile = None,
    percentage: Annotated[int | None, typer.Option(min=0, max=100)] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="Add a Veteran to the allow-list.")
    ] = None,
    disallow: Annotated[list[str] | None, typer.Option(help="Remove from the allow-list.")] = None,
    kill: Annotated[bool | None, typer.Option("--kill/--unkill", help="The kill switch.")] = None,
    by: Annotated[str, typer.Option(envvar="USER", help="Who is changing it.")] = "unknown",
) -> None:
    """Change a flag's rollout; running services pick it up within seconds."""
    from plumbing.logs import get_logger

    flags = flag_file(file)
    current = flags.read().get(flag)
    changes: dict[str, Any] = {}
    if percentage is not None:
        changes["percentage"] = percentage
    if kill is not None:
        changes["killed"] = kill
    if allow or disallow:
        listed = dict.fromkeys(current.allow if current else ())
        listed.update(dict.fromkeys(allow or ()))
        changes["allow"] = tuple(v for v in listed if v not in set(disallow or ()))
    try:
        before, after = flags.change(flag, by=by, **changes)
    except (KeyError, ValueError) as error:
        raise typer.BadParameter(str(error).strip("'")) from None
    get_logger(cli_identity()).warning(
        "feature flag changed",
        flag=flag,
        by=by,
        before={
            "percentage": before.percentage,
            "allow": len(before.allow),
            "killed": before.killed,
        },
        after={"percentage": after.percentage, "allow": len(after.allow), "killed": after.killed},
    )
    console.print(
        f"{flag}: {before.percentage}% -> {after.percentage}%, "
        f"allow-list {len(before.allow)} -> {len(after.allow)}, "
        f"{'KILLED' if after.killed else 'on'} (by {by})"
    )


def default_journey_url() -> str:
    from rxsm.journeys import LedgerSettings

    return LedgerSettings().journey_url


def default_renewal_url() -> str:
    from rxsm.journeys import LedgerSettings

    return LedgerSettings().renewal_url


JourneyUrl = Annotated[
    str,
    typer.Option(
        "--journey-url",
        envvar="RXSM_JOURNEY_URL",
        help="The journey service, which keeps the journey ledger.",
        default_factory=default_journey_url,
    ),
]
RenewalUrl = Annotated[
    str,
    typer.Option(
        "--renewal-url",
        envvar="RXSM_RENEWAL_URL",
        help="The renewal service, asked about a renewal the journey has not seen (its request "
        "not on Kafka yet).",
        default_factory=default_renewal_url,
    ),
]
DURATION = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str | timedelta) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``30d`` or ``2w`` as a time span (a default passes as it is)."""
    if isinstance(text, timedelta):
        return text
    found = DURATION.match(text.strip())
    if found is None:
        raise typer.BadParameter(f"{text!r}: give a number and a unit (s, m, h, d, w), e.g. 1h")
    return timedelta(**{UNITS[found[2]]: int(found[1])})


SINCE_HELP = "How far back: a number and a unit (s, m, h, d, w), e.g. 15m, 1h, 30d."
LastHour = Annotated[
    timedelta,
    typer.Option(
        "--since", parser=duration, metavar="DURATION", show_default="1h", help=SINCE_HELP
    ),
]
LastMonth = Annotated[
    timedelta,
    typer.Option(
        "--since", parser=duration, metavar="DURATION", show_default="30d", help=SINCE_HELP
    ),
]


def ledger(url: str, service: str = "journey") -> "LedgerClient":
    from rxsm.journeys import LedgerClient

    return LedgerClient(url, service=service)


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _after(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds < 60:
        return f"+{seconds:.1f}s"
    if seconds < 3600:
        return f"+{seconds / 60:.1f}m"
    return f"+{seconds / 3600:.1f}h"


def print_journey(journey: "Journey") -> None:
    state = "open" if journey.open else "closed"
    console.print(
        f"[bold]Renewal {journey.renewal_id}[/]: [bold]{journey.status}[/] ({state}), "
        f"EHR {journey.ehr}, cohort {journey.cohort or 'unknown'}, "
        f"requested {_when(journey.requested_at)} UTC over {journey.source}"
    )
    shown = table("step", "tool", "at (UTC)", "after", "error", "detail")
    for step in journey.steps:
        failed = step.error_code is not None or step.step == "dead_lettered"
        shown.add_row(
            step.step,
            step.tool,
            _when(step.at),
            _after(journey.elapsed(step)),
            step.error_code or "",
            step.detail or "",
            style="bold red" if failed else "",
        )
    console.print(shown)
    if journey.failure is not None:
        failure = journey.failure
        console.print(
            f"[bold red]FAILED[/] in tool [bold]{failure.tool}[/] at step {failure.step}, "
            f"error {failure.error_code or 'unknown'}"
        )
    if journey.stalled is not None:
        stalled = journey.stalled
        console.print(
            f"[bold yellow]STALLED[/] waiting for {stalled.waiting_for} (tool "
            f"[bold]{stalled.tool}[/]) since {_when(stalled.since)} UTC, "
            f"noticed {_when(stalled.detected_at)} UTC"
        )
    console.print(f"trace id: {journey.trace_id or 'none recorded'}")


@app.command(name="journey")
@logged
def journey_command(
    renewal_id: UUID,
    journey_url: JourneyUrl,
    renewal_url: RenewalUrl,
    as_json: AsJson = False,
) -> None:
    """Where a renewal is: its steps, times and owning tools, the failure or stall, the trace id.

    A renewal the journey service has not seen (its request is not on Kafka yet) is looked up in the
    renewal service's intake: accepted, or stalled on meds."""
    from rxsm.journeys import LedgerUnavailable

    try:
        with ledger(journey_url) as client:
            found = client.journey(renewal_id)
    except LedgerUnavailable as error:
        raise typer.BadParameter(str(error), param_hint="--journey-url") from None
    if found is None:
        intake_of(renewal_id, renewal_url, as_json)
        return
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    print_journey(found)


def intake_of(renewal_id: UUID, renewal_url: str, as_json: bool) -> None:
    """Show the renewal as the renewal service's intake knows it (the journey has not seen it)."""
    from rxsm.journeys import LedgerUnavailable

    try:
        with ledger(renewal_url, service="renewal") as client:
            intake = client.intake(renewal_id)
    except LedgerUnavailable as error:
        raise typer.BadParameter(str(error), param_hint="--renewal-url") from None
    if intake is None:
        raise typer.BadParameter(
            f"neither the journey nor the renewal service has renewal {renewal_id}",
            param_hint="RENEWAL_ID",
        )
    if as_json:
        print_json({"journey": None, "intake": intake.model_dump(mode="json")})
        return
    console.print(
        f"[bold]Renewal {renewal_id}[/]: not in the journey; the renewal service's intake says "
        f"[bold]{intake.status}[/], EHR {intake.ehr}, cohort {intake.cohort or 'unknown'}, "
        f"requested {_when(intake.requested_at)} UTC over {intake.source}"
    )
    if intake.failure is not None:
        console.print(
            f"[bold red]FAILED[/] in tool [bold]{intake.failure.tool}[/] at step "
            f"{intake.failure.step}, error {intake.failure.error_code or 'unknown'}"
        )
    if intake.stalled is not None:
        stalled = intake.stalled
        console.print(
            f"[bold yellow]STALLED[/] waiting for {stalled.waiting_for} (tool "
            f"[bold]{stalled.tool}[/]) since {_when(stalled.since)} UTC, "
            f"noticed {_when(stalled.detected_at)} UTC"
        )
    console.print(f"trace id: {intake.trace_id or 'none recorded'}")


@app.command()
@logged
def failures(
    journey_url: JourneyUrl, since: LastHour = timedelta(hours=1), as_json: AsJson = False
) -> None:
    """Renewals that failed or stalled, grouped by owning tool, step and error."""
    from rxsm.journeys import MOST_LISTED, LedgerUnavailable, group_failures

    try:
        with ledger(journey_url) as client:
            found = client.failures(datetime.now(UTC) - since)
    except LedgerUnavailable as error:
        raise typer.BadParameter(str(error), param_hint="--journey-url") from None
    groups = group_failures(found)
    if as_json:
        print_json(
            [
                {
                    "tool": group.tool,
                    "step": group.step,
                    "error": group.error,
                    "count": group.count,
                    "renewal_ids": [str(renewal_id) for renewal_id in group.renewal_ids],
                }
                for group in groups
            ]
        )
        return
    shown = table("tool", "step", "error", "renewals", "for example")
    for group in groups:
        examples = ", ".join(str(renewal_id) for renewal_id in group.renewal_ids[:2])
        more = group.count - 2
        shown.add_row(
            group.tool,
            group.step,
            group.error,
            str(group.count),
            examples + (f" (+{more} more)" if more > 0 else ""),
        )
    console.print(shown)
    console.print(
        f"{len(found)} failed or stalled renewal(s) since {_when(datetime.now(UTC) - since)} UTC"
    )
    if len(found) == MOST_LISTED:
        console.print(f"[bold]The ledger lists at most {MOST_LISTED}: there may be more.[/]")


def _share(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def print_report(found: "Report") -> None:
    console.print(
        f"[bold]From {_when(found.since)} to {_when(found.until)} UTC[/]: "
        f"{found.renewals_requested} renewal(s) requested"
    )
    for topic, kept in sorted(found.unseen.items()):
        console.print(
            f"[bold yellow]Not the whole window[/]: Kafka keeps {topic} from {_when(kept)} UTC only "
            f"(its retention); what happened on it before is not counted. The journey service "
            "keeps every journey longer: rxsm failures, rxsm journey."
        )
    sent = found.messages_sent
    console.print(
        f"Messages sent: {sent.total} by {sent.veterans} Veteran(s), "
        f"{'-' if sent.per_veteran is None else f'{sent.per_veteran:.2f}'} per Veteran"
    )
    shown = table("messages sent by", "value", "messages")
    for platform, count in sorted(sent.by_platform.items()):
        shown.add_row("platform", platform, str(count))
    for ehr, count in sorted(sent.by_ehr.items()):
        shown.add_row("EHR", ehr, str(count))
    console.print(shown)
    chosen = found.team_selection
    shown = table("care team chosen from", "messages", "share")
    for kind, count in chosen.counts.items():
        shown.add_row(kind, str(count), _share(chosen.shares.get(kind)))
    console.print(shown)
    sends = found.sends
    console.print(
        f"Sends: {sends.attempts} attempt(s), {sends.failed} failed "
        f"({_share(sends.failure_rate)})"
        + "".join(f", {code} x{count}" for code, count in sorted(sends.by_error_code.items()))
    )
    shown = table("failed step", "tool", "error", "count", "share of failures")
    for failure in found.failures:
        shown.add_row(
            failure.step, failure.tool, failure.error, str(failure.count), _share(failure.share)
        )
    console.print(shown)
    shown = table(
        "cohort",
        "renewals",
        "no care team",
        "sent",
        "send failures",
        "recent",
        "picker",
        "suggested",
    )
    for cohort, summary in found.cohorts.items():
        shares = summary.team_selection.shares
        shown.add_row(
            cohort,
            str(summary.renewals_requested),
            f"{summary.care_team_unavailable} ({_share(summary.unavailable_rate)})",
            str(summary.messages_sent),
            f"{summary.send_failures} ({_share(summary.send_failure_rate)})",
            _share(shares.get("recent")),
            _share(shares.get("care_system_picker")),
            _share(shares.get("suggested")),
        )
    console.print(shown)


@app.command()
@logged
def report(
    bootstrap: Bootstrap, since: LastMonth = timedelta(days=30), as_json: AsJson = False
) -> None:
    """The release plan's post-launch questions, answered from the events on Kafka."""
    from rxsm import report as post_launch

    until = datetime.now(UTC)
    events = asyncio.run(post_launch.read_events(bootstrap))
    unseen = asyncio.run(post_launch.unseen_before(bootstrap, until - since))
    found = post_launch.summarize(events, until - since, until, unseen)
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    print_report(found)


DbService = Annotated[
    str | None,
    typer.Option(
        "--service",
        metavar="NAME",
        help="One stateful service's database, e.g. renewal (default: each one's).",
    ),
]


@db_app.command(name="upgrade")
@logged
def db_upgrade(service: DbService = None) -> None:
    """Upgrade each database to this release's schema.

    Each service's database is the one it would use: RXSM_DATABASE_URL, else SQLite in RXSM_DATA_DIR.
    A database made before migrations is adopted where it is, never recreated."""
    from plumbing.migrations import SchemaError
    from rxsm import db

    try:
        for line in db.upgrade(service):
            console.print(line)
    except SchemaError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from None


@db_app.command(name="status")
@logged
def db_status(service: DbService = None, as_json: AsJson = False) -> None:
    """Each database's schema revisions, and whether they are this release's (exit 1 if not)."""
    from plumbing.migrations import SchemaError
    from rxsm import db

    try:
        found = db.status(service)
    except SchemaError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        print_json(
            [
                {**vars(schema), "at": sorted(schema.at), "needed": sorted(schema.needed)}
                | {"current": schema.current}
                for schema in found
            ]
        )
    else:
        shown = table("service", "database", "at", "this release needs", "current")
        for schema in found:
            shown.add_row(
                schema.service,
                schema.url,
                ", ".join(sorted(schema.at)) or ("-" if schema.found else "no database"),
                ", ".join(sorted(schema.needed)),
                "yes" if schema.current else "[bold red]no[/]: rxsm db upgrade",
            )
        console.print(shown)
    if not all(schema.current for schema in found):
        raise typer.Exit(1)


@app.command(name="outbox")
@logged
def outbox_command(
    service: Annotated[
        str | None,
        typer.Option("--service", help="One service's outbox (default: each stateful service's)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Events Kafka refused for good, set aside in each service's outbox: when, which event and
    whose (its key: the renewal or draft id), its size, and why (event_too_large, topic_invalid,
    record_invalid). The renewal of a set-aside renewal.requested is failed (rxsm failures)."""
    from rxsm.outbox import set_aside_events

    found = set_aside_events(service)
    if as_json:
        print_json(
            [
                {"service": outbox.service, **vars(event)}
                for outbox in found
                for event in outbox.events
            ]
        )
        return
    shown = table("service", "set aside (UTC)", "event", "event id", "key", "size", "reason")
    for outbox in found:
        if not outbox.found:
            shown.add_row(outbox.service, "-", "(no database here)", "", "", "", "")
        for event in outbox.events:
            shown.add_row(
                outbox.service,
                _when(event.set_aside_at or event.created_at),
                event.event_type,
                event.event_id,
                event.key,
                f"{event.size:,} B",
                event.reason,
                style="bold red",
            )
    console.print(shown)
    console.print(f"{sum(len(outbox.events) for outbox in found)} event(s) set aside")


def main() -> None:
    app()
