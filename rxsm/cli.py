"""``rxsm``: the command line of the renewal flow."""

from enum import StrEnum

import typer

from rxsm.serve import serve

app = typer.Typer(help="rxsm: medication renewal requests to Secure Messaging.", no_args_is_help=True)


@app.callback()
def rxsm() -> None:
    """Medication renewal requests from the Medications tool to Secure Messaging."""


class Service(StrEnum):
    renewal = "renewal"
    careteam = "careteam"
    messaging = "messaging"


@app.command(name="serve")
def serve_command(service: Service) -> None:
    """Run one service (HTTP API and Kafka consumers) in the foreground."""
    serve(service.value)


def main() -> None:
    app()
