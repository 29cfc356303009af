"""Where the services spend their CPU: py-spy attached to each running service while it is loaded.

py-spy samples every thread of a process from outside it (the event loop, the SQLite worker thread,
the span exporter's thread) without restarting it; ``--gil`` keeps only samples of a thread holding
the GIL, so the samples show where Python spends CPU. Each service gets the raw folded stacks
(``profile-<service>.folded``, for flame graph tools) and a summary (``profile-<service>.txt``): the
share of samples by library or rxsm package (the innermost frame that belongs to one) and the
functions with the most samples of their own.
"""

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import Proc

AREAS = (
    ("services/renewal/", "rxsm renewal service"),
    ("services/journey/", "rxsm journey service"),
    ("services/careteam/", "rxsm care-team service"),
    ("services/messaging/", "rxsm messaging service"),
    ("plumbing/", "rxsm plumbing"),
    ("schemas/", "rxsm schemas"),
    ("opentelemetry/", "opentelemetry"),
    ("sqlalchemy/", "sqlalchemy"),
    ("aiosqlite/", "aiosqlite + sqlite3"),
    ("sqlite3/", "aiosqlite + sqlite3"),
    ("faststream/", "faststream"),
    ("fast_depends/", "faststream"),
    ("aiokafka/", "aiokafka"),
    ("pydantic", "pydantic"),
    ("structlog/", "structlog + logging"),
    ("logging/", "structlog + logging"),
    ("prometheus_client/", "prometheus"),
    ("openfeature/", "openfeature"),
    ("json_logic/", "openfeature"),
    ("google/protobuf/", "opentelemetry"),
    ("requests/", "opentelemetry"),
    ("urllib3/", "opentelemetry"),
    ("starlette/", "fastapi + uvicorn"),
    ("fastapi/", "fastapi + uvicorn"),
    ("uvicorn/", "fastapi + uvicorn"),
    ("anyio/", "anyio"),
    ("asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("json/", "json"),
    ("threading.py", "threads"),
    ("queue.py", "threads"),
)


ROOT = Path(__file__).resolve().parent.parent
INSTALLED = re.compile(
    r"\((?:[^()]*/(?:site-packages|dist-packages|lib/python3\.\d+)/|" + re.escape(f"{ROOT}/") + ")"
)


def shorten(frame: str) -> str:
    """``function (path:line)`` with the path from its package on: py-spy runs with full file
    names, since its own shortening drops the package of namespace packages (OpenTelemetry's
    ``opentelemetry/sdk/trace/__init__.py`` became ``trace/__init__.py``), which hid them."""
    return INSTALLED.sub("(", frame)


def area_of(frame: str) -> str | None:
    path = frame[frame.rfind("(") + 1 :]
    for marker, area in AREAS:
        if path.startswith(marker):
            return area
    return None


def summarise(folded: str, top: int = 15) -> str:
    """The summary of py-spy's raw (folded) output: ``frame;frame;...;leaf count`` per line."""
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [shorten(frame) for frame in stack.split(";")]
        total += samples
        leaves[frames[-1]] += samples
        areas[next((a for f in reversed(frames) if (a := area_of(f))), "other")] += samples
    if not total:
        return "no samples (the service did no Python work while it was sampled)\n"
    lines = [
        f"{total} samples holding the GIL",
        "",
        "by area (innermost frame that belongs to one):",
    ]
    lines += [f"  {n / total:6.1%}  {area}" for area, n in areas.most_common()]
    lines += ["", f"top {top} functions by own samples:"]
    lines += [f"  {n / total:6.1%}  {leaf}" for leaf, n in leaves.most_common(top)]
    return "\n".join(lines) + "\n"


def py_spy() -> str:
    """py-spy beside this interpreter (the project's environment), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: run `uv sync` (it is a dev dependency)")
    return found


@contextmanager
def profiled(procs: list[Proc], out: Path, rate: int = 100) -> Iterator[None]:
    """Sample ``procs`` with py-spy while the block runs; write each one's folded stacks and summary."""
    command = py_spy()
    spies = [
        (
            proc,
            subprocess.Popen(
                [
                    command,
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--rate",
                    str(rate),
                    "--gil",
                    "--nonblocking",
                    "--full-filenames",
                    "--format",
                    "raw",
                    "--output",
                    str(out / f"profile-{proc.name}.folded"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        )
        for proc in procs
    ]
    try:
        yield
    finally:
        for _, spy in spies:
            spy.send_signal(signal.SIGINT)
        for proc, spy in spies:
            spy.wait(timeout=60)
            folded = out / f"profile-{proc.name}.folded"
            text = folded.read_text() if folded.exists() else ""
            (out / f"profile-{proc.name}.txt").write_text(
                f"py-spy profile of {proc.name} under load\n\n{summarise(text)}"
            )
