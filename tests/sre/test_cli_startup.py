"""`rxsm --help` and `rxsm --version` answer at once: the Kafka, HTTP, model and telemetry libraries
are imported by the commands that use them, not by the command line itself."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "aiokafka",
    "faststream",
    "fastapi",
    "httpx",
    "openfeature",
    "opentelemetry",
    "pydantic",
    "sqlalchemy",
    "structlog",
    "uvicorn",
)
"""Each of these takes tenths of a second to import; together they made `rxsm --help` take seconds."""


def loaded_by(*args: str) -> tuple[str, set[str]]:
    """What ``rxsm <args>`` prints, and which of HEAVY a fresh interpreter imported to print it."""
    probe = (
        "import json, sys\n"
        "from rxsm.cli import app\n"
        "try:\n"
        f"    app({list(args)!r}, prog_name='rxsm')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})),"
        " file=sys.stderr)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    return run.stdout, set(json.loads(run.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("--help",), set()),
        (("--version",), set()),
        (("topics", "--help"), {"pydantic"}),  # typer reads a command's options with pydantic
    ],
)
def test_the_command_line_answers_without_the_heavy_libraries(
    args: tuple[str, ...], allowed: set[str]
) -> None:
    out, loaded = loaded_by(*args)
    assert out
    assert loaded <= allowed


def test_version_is_the_installed_release() -> None:
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out, _ = loaded_by("--version")
    assert out == f"rxsm {release}\n"
