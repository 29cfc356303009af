"""``rxsm``: the command line of the renewal flow (run a service; look into the flow as an SRE)."""

import asyncio
import base64
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from plumbing.flags import DEFAULT_FILE, FLAGS, FlagFile
from plumbing.identity import ServiceIdentity
from plumbing.logs import configure_logging, get_logger
from plumbing.settings import ServiceSettings
from rxsm import deadletters
from rxsm.kafka_reads import consumer_lag
from rxsm.serve import serve
from schemas.vocabulary import Tool

app = typer.Typer(
    help="rxsm: medication renewal requests to Secure Messaging.", no_args_is_help=True
)
dlq = typer.Typer(help="Dead letters: records no consumer could process.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
flags_app = typer.Typer(help="Per-Veteran feature flags (the release plans' rollout).")
app.add_typer(flags_app, name="flags")
console = Console()
CLI = ServiceIdentity("cli", Tool.SM)
log = get_logger(CLI)

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers.",
        default_factory=lambda: ServiceSettings().kafka_bootstrap_servers,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.callback()
def rxsm() -> None:
    """Medication renewal requests from the Medications tool to Secure Messaging."""
    configure_logging(CLI, "WARNING", stream=sys.stderr)


class Service(StrEnum):
    renewal = "renewal"
    careteam = "careteam"
    messaging = "messaging"


@app.command(name="serve")
def serve_command(service: Service) -> None:
    """Run one service (HTTP API and Kafka consumers) in the foreground."""
    serve(service.value)


@app.command()
def asyncapi(
    out: Annotated[Path, typer.Option(help="Where to write one JSON document per service.")] = Path(
        "docs/asyncapi"
    ),
) -> None:
    """Write the AsyncAPI documents of the three services."""
    from rxsm.asyncapi import write

    for path in write(out):
        console.print(f"wrote {path}")


@app.command()
def topics(bootstrap: Bootstrap, as_json: AsJson = False) -> None:
    """Lag per consumer group, topic and partition."""
    lags = asyncio.run(consumer_lag(bootstrap))
    if as_json:
        print_json([{**vars(lag), "lag": lag.lag} for lag in lags])
        return
    table = Table("consumer group", "topic", "partition", "committed", "end", "lag")
    for lag in lags:
        style = "bold red" if lag.lag else ""
        table.add_row(
            lag.group,
            lag.topic,
            str(lag.partition),
            str(lag.committed),
            str(lag.end),
            str(lag.lag),
            style=style,
        )
    console.print(table)


@dlq.command(name="list")
def dlq_list(bootstrap: Bootstrap, as_json: AsJson = False) -> None:
    """Every dead letter: when, which service (and tool) refused it, from where, and why."""
    letters = asyncio.run(deadletters.dead_letters(bootstrap))
    if as_json:
        print_json([letter.model_dump(mode="json", exclude={"value", "key"}) for letter in letters])
        return
    table = Table("id", "when (UTC)", "tool", "service", "from", "error", "reason", "tries")
    for letter in letters:
        table.add_row(
            str(letter.event_id),
            f"{letter.occurred_at:%Y-%m-%d %H:%M:%S}",
            str(letter.tool),
            letter.service,
            f"{letter.topic}[{letter.partition}]@{letter.offset}",
            letter.error_type,
            letter.reason,
            str(letter.attempts),
        )
    console.print(table)
    console.print(f"{len(letters)} dead letter(s)")


@dlq.command(name="show")
def dlq_show(
    letter_id: str,
    bootstrap: Bootstrap,
    payload: Annotated[
        bool, typer.Option(help="Also print the original value (may hold PHI).")
    ] = False,
) -> None:
    """One dead letter in full."""
    letter = asyncio.run(deadletters.find(bootstrap, letter_id))
    if letter is None:
        raise typer.BadParameter(f"no dead letter with id {letter_id}", param_hint="LETTER_ID")
    shown = letter.model_dump(mode="json", exclude=set() if payload else {"value"})
    if payload:
        shown["value"] = base64.b64decode(letter.value).decode("utf-8", "replace")
    print_json(shown)


@dlq.command(name="replay")
def dlq_replay(
    bootstrap: Bootstrap,
    letter_ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids.")] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    service: Annotated[str | None, typer.Option(help="Only letters this service refused.")] = None,
) -> None:
    """Put dead letters back on the retry topic of the consumer group that refused them."""
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
    sent = asyncio.run(deadletters.replay(bootstrap, letters))
    for letter, topic in zip(letters, sent, strict=True):
        console.print(f"replayed {letter.event_id} -> {topic}")
    console.print(f"{len(sent)} dead letter(s) replayed")


FlagsFile = Annotated[
    Path, typer.Option("--file", envvar="RXSM_FLAGS_FILE", help="The flagd JSON file.")
]


@flags_app.callback(invoke_without_command=True)
def flags_show(ctx: typer.Context, file: FlagsFile = DEFAULT_FILE, as_json: AsJson = False) -> None:
    """The current rollout of every flag."""
    if ctx.invoked_subcommand is not None:
        return
    rollouts = FlagFile(file).read()
    if as_json:
        print_json({name: vars(rollout) for name, rollout in rollouts.items()})
        return
    table = Table("flag", "state", "percentage", "allow-list", "changed by", "at")
    for name, rollout in rollouts.items():
        table.add_row(
            name,
            "[bold red]KILLED[/]" if rollout.killed else "on",
            f"{rollout.percentage}%",
            str(len(rollout.allow)),
            rollout.updated_by or "",
            rollout.updated_at or "",
        )
    console.print(table)


@flags_app.command(name="set")
def flags_set(
    flag: Annotated[str, typer.Argument(help=f"One of: {', '.join(FLAGS)}")],
    file: FlagsFile = DEFAULT_FILE,
    percentage: Annotated[int | None, typer.Option(min=0, max=100)] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="Add a Veteran to the allow-list.")
    ] = None,
    disallow: Annotated[list[str] | None, typer.Option(help="Remove from the allow-list.")] = None,
    kill: Annotated[bool | None, typer.Option("--kill/--unkill", help="The kill switch.")] = None,
    by: Annotated[str, typer.Option(envvar="USER", help="Who is changing it.")] = "unknown",
) -> None:
    """Change a flag's rollout; running services pick it up within seconds."""
    flag_file = FlagFile(file)
    current = flag_file.read().get(flag)
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
        before, after = flag_file.change(flag, by=by, **changes)
    except (KeyError, ValueError) as error:
        raise typer.BadParameter(str(error).strip("'")) from None
    log.warning(
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


def main() -> None:
    app()
