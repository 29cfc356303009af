"""The image's file set without a Docker engine: built the way the Dockerfile builds it, then each service
started from it the way docker-compose.yml starts it, until ready.

    uv run python -m deploy.image [--bootstrap HOST:PORT] [--keep]

The Dockerfile's ENV, WORKDIR, COPY and RUN lines and the .dockerignore are read; exactly what each COPY
names is copied into a clean directory that stands for the image's root, and the Dockerfile's ``uv sync``
lines run there in order (a virtual environment of its own, so nothing outside the copied files can be
imported: the repo is not on its path). Every service of docker-compose.yml run with ``rxsm`` is then
started with the compose command and environment (Kafka at ``--bootstrap``, a free port, a data volume of
its own), and must answer GET /ready with 200 and pass its compose healthcheck; then each is stopped by its
pid. A file a service reads at start that no COPY line brings makes that service fail to start, and this
check with it. The other RUN lines (installing uv, adding the user) are not replayed: they are listed.
"""

import argparse
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
"""The environment of the base image (python:3.11-slim) that the Dockerfile's ENV lines extend."""
REPLAYED = ("uv sync",)
"""The RUN commands replayed here: those that make the image's Python environment."""
READY_WITHIN = 180.0
DEFAULT_STOP_GRACE = 10.0
"""Compose's default ``stop_grace_period``."""
NOT_FORWARDED = ("OTEL_EXPORTER_OTLP_ENDPOINT",)
"""Compose environment left out here: addresses of compose's own containers (Jaeger)."""


class ImageError(RuntimeError):
    """The image would not build, or a service started from it did not become ready."""


@dataclass(frozen=True)
class Copy:
    """One COPY line: each file of the build context (repo-relative) and where it lands in the image."""

    line: str
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Run:
    line: str
    command: str
    workdir: str
    env: dict[str, str]

    @property
    def replayed(self) -> bool:
        return self.command.startswith(REPLAYED)


@dataclass
class Plan:
    """What the Dockerfile does, in order, and what the image ends with."""

    steps: list[Copy | Run] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: dict(BASE_ENV))
    workdir: str = "/"
    user: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    def copied(self) -> dict[str, str]:
        """Every repo-relative file the image holds, and its path in the image."""
        return {
            source: target
            for step in self.steps
            if isinstance(step, Copy)
            for source, target in step.files
        }

    def skipped(self) -> list[str]:
        return [step.line for step in self.steps if isinstance(step, Run) and not step.replayed]


def instructions(dockerfile: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each line, continuations joined, comments left out."""
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            yield keyword.upper(), arguments.strip()
    if pending.strip():
        raise ImageError(f"the Dockerfile ends inside a continued line: {pending.strip()}")


def expand(value: str, env: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` from the environment so far, as Docker expands them in ENV and COPY."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def exec_form(arguments: str) -> list[str]:
    """A JSON (exec form) or shell form argument list."""
    if arguments.startswith("["):
        parsed = yaml.safe_load(arguments)
        if not isinstance(parsed, list):
            raise ImageError(f"not an exec form: {arguments}")
        return [str(part) for part in parsed]
    return ["/bin/sh", "-c", arguments]


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """The .dockerignore's patterns, in order: (is an exception ``!``, regex of the path it matches)."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        rules.append((exception, re.compile(_glob_regex(pattern))))
    return rules


def _glob_regex(pattern: str) -> str:
    """A Docker ignore pattern as a regex over a repo-relative path; a match on a folder takes all
    that is in it."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            members = pattern[i + 1 : end]
            negated = members.startswith(("!", "^"))
            members = re.escape(members[1:] if negated else members).replace("\\-", "-")
            out, i = out + f"[{'^' if negated else ''}{members}]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return f"^{out}(?:/.*)?$"


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """The last rule matching ``path`` decides, as in Docker."""
    ignored = False
    for exception, regex in rules:
        if regex.match(path):
            ignored = not exception
    return ignored


def _copy_files(
    context: Path, sources: list[str], destination: str, rules: list[tuple[bool, re.Pattern[str]]]
) -> list[tuple[str, str]]:
    """Docker's COPY: a folder's contents go into the destination, a file into it when it ends in
    ``/`` or several sources are given, else to it. A source that is not there fails the build."""
    into_folder = destination.endswith("/") or len(sources) > 1
    files: list[tuple[str, str]] = []
    for source in sources:
        matches = (
            sorted(context.glob(source.lstrip("/"))) if any(c in source for c in "*?[") else []
        )
        paths = matches or [context / source.lstrip("/")]
        for path in paths:
            relative = path.relative_to(context).as_posix()
            if not path.exists() or is_ignored(relative, rules):
                raise ImageError(f"COPY {source}: not in the build context (or .dockerignore'd)")
            if path.is_dir():
                for found in sorted(p for p in path.rglob("*") if p.is_file()):
                    inside = found.relative_to(context).as_posix()
                    if not is_ignored(inside, rules):
                        target = posixpath.join(destination, found.relative_to(path).as_posix())
                        files.append((inside, posixpath.normpath(target)))
            elif into_folder or len(paths) > 1:
                files.append((relative, posixpath.normpath(posixpath.join(destination, path.name))))
            else:
                files.append((relative, posixpath.normpath(destination)))
    return files


def plan(context: Path = ROOT, dockerfile: str | None = None) -> Plan:
    """What the Dockerfile (``dockerfile``'s text, else the context's Dockerfile) does; nothing run."""
    text = dockerfile if dockerfile is not None else (context / "Dockerfile").read_text()
    ignore = context / ".dockerignore"
    rules = ignore_rules(ignore.read_text()) if ignore.is_file() else []
    image = Plan()
    stages = 0
    for keyword, arguments in instructions(text):
        line = f"{keyword} {arguments}"
        if keyword == "FROM":
            stages += 1
            if stages > 1:
                raise ImageError("a multi-stage Dockerfile: this check builds one stage")
        elif keyword == "ENV":
            image.env.update(_env_pairs(arguments, image.env))
        elif keyword == "WORKDIR":
            image.workdir = posixpath.join(image.workdir, expand(arguments, image.env))
        elif keyword in ("COPY", "ADD"):
            parts = exec_form(arguments) if arguments.startswith("[") else shlex.split(arguments)
            flags = [part for part in parts if part.startswith("--")]
            if any(flag.startswith("--from") for flag in flags):
                raise ImageError(f"{line}: copies from another image, which this check cannot")
            *sources, destination = [expand(p, image.env) for p in parts if p not in flags]
            destination = posixpath.join(image.workdir, destination) + (
                "/" if destination.endswith("/") else ""
            )
            image.steps.append(Copy(line, tuple(_copy_files(context, sources, destination, rules))))
        elif keyword == "RUN":
            image.steps.append(Run(line, arguments, image.workdir, dict(image.env)))
        elif keyword == "USER":
            image.user = arguments
        elif keyword == "ENTRYPOINT":
            image.entrypoint = exec_form(arguments)
        elif keyword == "CMD":
            image.cmd = exec_form(arguments)
    if stages == 0:
        raise ImageError("the Dockerfile has no FROM")
    return image


def _env_pairs(arguments: str, env: dict[str, str]) -> dict[str, str]:
    tokens = shlex.split(arguments)
    if tokens and all("=" in token for token in tokens):
        pairs = dict(token.split("=", 1) for token in tokens)
    else:
        name, _, value = arguments.partition(" ")
        pairs = {name: value.strip()}
    return {name: expand(value, env) for name, value in pairs.items()}


@dataclass
class Built:
    """The image's file system under ``root`` (``/`` of the image)."""

    plan: Plan
    root: Path

    def host(self, image_path: str) -> Path:
        return self.root / posixpath.join(self.plan.workdir, image_path).lstrip("/")

    @property
    def workdir(self) -> Path:
        return self.host(self.plan.workdir)

    def host_path_list(self, value: str) -> str:
        """A PATH of the image, each folder the image has taken from under ``root``."""
        return os.pathsep.join(
            str(self.host(entry)) if self.host(entry).exists() else entry
            for entry in value.split(":")
        )


def build(root: Path, context: Path = ROOT, dockerfile: str | None = None) -> Built:
    """Copy the files and run the ``uv sync`` lines in the Dockerfile's order, under ``root``."""
    image = plan(context, dockerfile)
    built = Built(image, root)
    built.workdir.mkdir(parents=True, exist_ok=True)
    for step in image.steps:
        if isinstance(step, Copy):
            for source, target in step.files:
                destination = built.host(target)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(context / source, destination)
        elif step.replayed:
            env = {
                **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
                **{k: v for k, v in step.env.items() if k != "PATH"},
            }
            env.pop("UV_PROJECT_ENVIRONMENT", None)
            done = subprocess.run(
                shlex.split(step.command),
                cwd=built.host(step.workdir),
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise ImageError(f"{step.line} failed:\n{done.stdout}{done.stderr}")
    return built


@dataclass
class Service:
    """One compose service started from the built image."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    healthcheck: dict[str, Any]
    stop_grace: float
    process: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] | None = None
    ready_after: float | None = None
    healthcheck_code: int | None = None
    exit_code: int | None = None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def compose_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services made from this image and run with ``rxsm`` (not Kafka, Jaeger...)."""
    return {
        name: spec
        for name, spec in compose["services"].items()
        if "build" in spec and list(spec.get("command") or [])[:1] == ["rxsm"]
    }


def _seconds(value: str | None, default: float) -> float:
    if value is None:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(value))
    if not match:
        raise ImageError(f"cannot read the duration {value!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(built: Built, compose: dict[str, Any], bootstrap: str) -> list[Service]:
    """Each rxsm service of ``compose`` as a process to start from ``built``: the compose command after
    the image's ENTRYPOINT, the image's environment then the service's, Kafka at ``bootstrap``, a free
    loopback port, each data volume a folder of its own."""
    services = []
    for name, spec in compose_services(compose).items():
        volumes = {
            str(volume).split(":")[1]: built.root
            / "volumes"
            / f"{name}-{str(volume).split(':')[0]}"
            for volume in spec.get("volumes", [])
        }
        for folder in volumes.values():
            folder.mkdir(parents=True, exist_ok=True)

        def local(value: str, volumes: dict[str, Path] = volumes) -> str:
            for target, folder in volumes.items():
                if value == target or value.startswith(target + "/"):
                    return str(folder) + value[len(target) :]
            return str(built.host(value)) if value.startswith("/") else value

        env = {
            name_: (built.host_path_list(value) if name_ == "PATH" else local(value))
            for name_, value in built.plan.env.items()
        }
        env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
        for dropped in NOT_FORWARDED:
            env.pop(dropped, None)
        port = free_port()
        home = built.root / "home" / "rxsm"
        home.mkdir(parents=True, exist_ok=True)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            RXSM_HTTP_PORT=str(port),
            RXSM_HTTP_HOST="127.0.0.1",
            HOME=str(home),
            PYTHONDONTWRITEBYTECODE="1",  # the image's /app is root's; its user writes only to /data
        )
        argv = [*built.plan.entrypoint, *[str(part) for part in spec["command"]]]
        services.append(
            Service(
                name=name,
                argv=argv,
                env=env,
                port=port,
                log=built.root / "logs" / f"{name}.log",
                healthcheck=spec.get("healthcheck") or {},
                stop_grace=_seconds(spec.get("stop_grace_period"), DEFAULT_STOP_GRACE),
            )
        )
    return services


def resolve(built: Built, argv: list[str], env: dict[str, str]) -> list[str]:
    """``argv`` with its program found on the service's PATH, which must be the image's."""
    program = shutil.which(argv[0], path=env["PATH"])
    # not resolved: the venv's python links to the base image's interpreter, as in the image
    if program is None or not Path(program).absolute().is_relative_to(built.root.absolute()):
        found = f" (only {program}, outside the image)" if program else ""
        raise ImageError(f"the image has no {argv[0]} on its PATH{found}")
    return [program, *argv[1:]]


def start(built: Built, service: Service) -> None:
    service.log.parent.mkdir(parents=True, exist_ok=True)
    argv = resolve(built, service.argv, service.env)
    with service.log.open("ab") as out:
        service.process = subprocess.Popen(
            argv,
            cwd=built.workdir,
            env=service.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(services: list[Service], within: float = READY_WITHIN) -> None:
    """Until each answers GET /ready with 200; ImageError with its log when one exits or times out."""
    started = time.monotonic()
    waiting = list(services)
    with httpx.Client(timeout=5) as client:
        while waiting:
            for service in list(waiting):
                assert service.process is not None
                if service.process.poll() is not None:
                    raise ImageError(
                        f"{service.name} exited ({service.process.returncode}) while starting:\n"
                        f"{service.tail()}"
                    )
                try:
                    answer = client.get(f"http://127.0.0.1:{service.port}/ready")
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    service.ready = answer.json()
                    service.ready_after = time.monotonic() - started
                    waiting.remove(service)
            if waiting and time.monotonic() - started > within:
                names = ", ".join(service.name for service in waiting)
                raise ImageError(f"not ready after {within:.0f} s: {names}\n{waiting[0].tail()}")
            time.sleep(0.3)


def run_healthcheck(built: Built, service: Service) -> int:
    """The compose healthcheck's command, in the service's environment; its exit code."""
    test = [str(part) for part in service.healthcheck.get("test") or []]
    if not test or test[0] not in ("CMD", "CMD-SHELL"):
        raise ImageError(f"{service.name}: no healthcheck command in compose")
    argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    done = subprocess.run(
        resolve(built, argv, service.env) if test[0] == "CMD" else argv,
        cwd=built.workdir,
        env=service.env,
        capture_output=True,
        timeout=_seconds(service.healthcheck.get("timeout"), 30.0) + 5,
        check=False,
    )
    return done.returncode


def stop(service: Service) -> None:
    """SIGTERM by pid, as ``docker stop``; SIGKILL after the compose grace period."""
    process = service.process
    if process is None or process.poll() is not None:
        service.exit_code = process.returncode if process else None
        return
    process.send_signal(signal.SIGTERM)
    try:
        service.exit_code = process.wait(service.stop_grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise ImageError(
            f"{service.name} ignored SIGTERM for {service.stop_grace:g} s:\n{service.tail()}"
        ) from None


def app_files(built: Built) -> set[str]:
    """The files of the image's app folder but its virtual environment."""
    venv = built.workdir / ".venv"
    return {
        path.relative_to(built.workdir).as_posix()
        for path in built.workdir.rglob("*")
        if path.is_file() and not path.is_relative_to(venv)
    }


@dataclass
class Smoke:
    built: Built
    services: list[Service]
    written_to_app: set[str]


@contextmanager
def image_root(keep: bool = False) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="rxsm-image-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def smoke(root: Path, bootstrap: str, context: Path = ROOT, dockerfile: str | None = None) -> Smoke:
    """Build the image's file set under ``root``, start every rxsm service of compose from it until
    ready, run each healthcheck, and stop them. ImageError says what failed."""
    built = build(root, context, dockerfile)
    compose = yaml.safe_load((context / "docker-compose.yml").read_text())
    services = prepare(built, compose, bootstrap)
    before = app_files(built)
    try:
        for service in services:
            start(built, service)
        wait_ready(services)
        for service in services:
            service.healthcheck_code = run_healthcheck(built, service)
    finally:
        for service in services:
            stop(service)
    return Smoke(built, services, app_files(built) - before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka for the services (default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the built folder and the logs")
    options = parser.parse_args(argv)
    with image_root(options.keep) as root:
        print(f"building the image's files under {root}")
        try:
            result = smoke(root, options.bootstrap)
        except ImageError as error:
            print(f"FAILED: {error}", file=sys.stderr)
            return 1
        print(f"  {len(result.built.plan.copied())} files copied by the COPY lines")
        for line in result.built.plan.skipped():
            print(f"  not replayed: {line}")
        failed = False
        for service in result.services:
            healthy = service.healthcheck_code == 0
            failed |= not healthy
            print(
                f"{service.name}: ready after {service.ready_after:.1f} s "
                f"{service.ready and service.ready.get('checks')}, "
                f"healthcheck {'passed' if healthy else f'failed ({service.healthcheck_code})'}, "
                f"stopped ({service.exit_code})"
            )
        if result.written_to_app:
            failed = True
            print(f"written into the app folder (the image's user cannot): {result.written_to_app}")
        if options.keep:
            print(f"kept {root}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
