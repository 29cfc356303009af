"""Run a real single-node Apache Kafka (KRaft) broker from Maven Central jars, without Docker."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

KAFKA_VERSION = "4.1.1"
PACKAGE_DIR = Path(__file__).resolve().parent
POM = PACKAGE_DIR / "pom.xml"
LOG4J2_CONFIG = PACKAGE_DIR / "log4j2.properties"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

READY_MESSAGE = "Kafka Server started"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.5
LOG_TAIL_LINES = 30

JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20")

PROGRESS_EVERY_S = 5.0
"""How often the first download says how far it has got."""


class LocalKafkaError(RuntimeError):
    """The local broker could not be set up, started or stopped."""


def cache_dir() -> Path:
    """Return the jar cache: ``${RXSM_CACHE_DIR:-~/.cache/rxsm}/kafka-<version>``."""
    base = os.environ.get("RXSM_CACHE_DIR") or str(Path.home() / ".cache" / "rxsm")
    return Path(base).expanduser().resolve() / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def ensure_jars() -> Path:
    """Download the broker's classpath once (Maven) and return the ``libs`` directory.

    A marker holding the pom's digest is written only after a complete download, so an
    interrupted one (or a changed pom) is redone; a file lock keeps concurrent callers apart.
    The download says on stderr how far it has got every ``PROGRESS_EVERY_S`` seconds; once the
    jars are cached, nothing is printed.
    """
    root = cache_dir()
    libs = root / "libs"
    marker = root / "complete"
    digest = _pom_digest()
    if marker.is_file() and marker.read_text().strip() == digest and libs.is_dir():
        return libs
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say("another process is downloading the Kafka jars; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == digest and libs.is_dir():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                "Maven (mvn) is not on PATH: it is needed once to fetch the Kafka jars"
            )
        marker.unlink(missing_ok=True)
        staging = root / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        _say(f"downloading Apache Kafka {KAFKA_VERSION} jars from Maven Central (once)")
        cmd = [
            mvn, "-B", "-Dstyle.color=never", f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime", "-f", str(POM),
        ]  # fmt: skip
        returncode, progress, tail = _run_maven(cmd)
        if returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            raise LocalKafkaError(
                f"downloading the Kafka jars failed (mvn exit {returncode}):\n" + "\n".join(tail)
            )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest + "\n")
        _say(f"Kafka jars ready in {libs} ({progress.elapsed():.0f} s): {progress.summary()}")
    return libs


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (\S+) \(([\d.,]+) (B|kB|KB|MB|GB)\b")
_COPIED = re.compile(r"Copying (\S+\.jar) to ")
_UNITS = {"B": 1, "kB": 1_000, "KB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000}


@dataclass
class MavenProgress:
    """How far a Maven run has got, from its batch-mode output lines."""

    started: float
    files: int = 0
    """Files downloaded from a repository (jars, poms, checksums)."""
    jars: int = 0
    downloaded_bytes: int = 0
    copied: int = 0
    """Jars copied into the cache (the last step)."""

    def feed(self, line: str) -> None:
        line = _ANSI.sub("", line)
        if found := _DOWNLOADED.search(line):
            url, size, unit = found.groups()
            self.files += 1
            self.jars += url.endswith(".jar")
            self.downloaded_bytes += round(float(size.replace(",", "")) * _UNITS[unit])
        elif _COPIED.search(line):
            self.copied += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        megabytes = self.downloaded_bytes / 1e6
        said = f"{self.jars} jars downloaded ({megabytes:.1f} MB in {self.files} files)"
        if self.copied:
            said += f", {self.copied} copied to the cache"
        return said


def _run_maven(cmd: list[str]) -> tuple[int, MavenProgress, list[str]]:
    """Run Maven, saying how far it has got every ``PROGRESS_EVERY_S`` s on stderr; return its exit
    code, its progress and the last lines of its output."""
    progress = MavenProgress(started=time.monotonic())
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )

    def read(out: IO[str]) -> None:
        for line in out:
            progress.feed(line)
            tail.append(_ANSI.sub("", line.rstrip()))

    assert proc.stdout is not None
    reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
    reader.start()
    try:
        while True:
            try:
                proc.wait(timeout=PROGRESS_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                _say(
                    f"  still downloading the Kafka jars ({progress.elapsed():.0f} s):"
                    f" {progress.summary()} so far"
                )
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join()
    return proc.returncode, progress, list(tail)


def java_executable() -> str:
    """Return the ``java`` to run: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError("java is not on PATH (and JAVA_HOME is unset): OpenJDK 17+ is needed")
    return java


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """Return True if ``host:port`` can be bound (as the broker would, with SO_REUSEADDR)."""
    if port_answers(host, port):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _new_cluster_id() -> str:
    """Return a KRaft cluster id: URL-safe base64 of a uuid4, no padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _command_line(pid: int) -> str:
    """Return the command line of ``pid`` ('' if unknown)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        try:
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    result = subprocess.run(
        ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False
    )
    return result.stdout


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return ""
    with open(path, errors="replace") as fh:
        return "".join(deque(fh, maxlen=lines))


class LocalKafka:
    """A single combined broker+controller KRaft node on loopback, run from cached Maven jars.

    Files in ``data_dir``: ``server.properties``, ``cluster.id``, ``kafka.pid``, ``server.log``
    (log4j2), ``kafka.out`` (the JVM's stdout/stderr) and ``kraft/`` (the log dir: topics, offsets).
    """

    def __init__(
        self,
        port: int = 9092,
        controller_port: int | None = None,
        data_dir: Path | str = Path(".run/kafka"),
        host: str = "127.0.0.1",
        *,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        """Describe a broker; nothing starts until :meth:`start`.

        ``extra_properties`` are appended to ``server.properties`` (later lines win), e.g.
        ``{"broker.session.timeout.ms": "3000"}`` for faster restarts after :meth:`kill`.
        """
        self.port = port
        self.host = host
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._controller_port = controller_port
        self.extra_properties = dict(extra_properties or {})
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths and properties -------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to, e.g. ``127.0.0.1:9092``."""
        return f"{self.host}:{self.port}"

    @property
    def controller_port(self) -> int:
        """The KRaft controller port: as given, else ``port + 1`` if free, else a free port."""
        if self._controller_port is None:
            candidate = self.port + 1
            self._controller_port = (
                candidate if port_is_free(self.host, candidate) else free_port(self.host)
            )
        return self._controller_port

    @property
    def log_dir(self) -> Path:
        """Kafka's ``log.dirs``: where topic data and KRaft metadata live."""
        return self.data_dir / "kraft"

    @property
    def properties_file(self) -> Path:
        """The generated ``server.properties``."""
        return self.data_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        """The pid file of the running broker."""
        return self.data_dir / "kafka.pid"

    @property
    def server_log(self) -> Path:
        """The broker's log4j2 log."""
        return self.data_dir / "server.log"

    @property
    def stdout_log(self) -> Path:
        """The JVM's stdout and stderr."""
        return self.data_dir / "kafka.out"

    @property
    def pid(self) -> int | None:
        """The pid of the running broker (started here, or recorded in the pid file), else None."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc.pid
            self._proc = None
        pid = self._read_pid_file()
        if pid is not None and _pid_alive(pid) and self._is_our_broker(pid):
            return pid
        return None

    def is_running(self) -> bool:
        """Return True if this data dir's broker process is alive."""
        return self.pid is not None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalKafka:
        """Write the config, format storage if needed, launch the broker, wait until it serves."""
        if self.is_running():
            raise LocalKafkaError(
                f"a broker for {self.data_dir} is already running (pid {self.pid})"
            )
        for name, port in (("port", self.port), ("controller port", self.controller_port)):
            if not port_is_free(self.host, port):
                raise LocalKafkaError(
                    f"{name} {self.host}:{port} is already in use by another process"
                )
        libs = ensure_jars()
        java = java_executable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self._write_properties()
        if not (self.log_dir / "meta.properties").is_file():  # written last by the formatter
            self._format_storage(java, libs)

        log_offset = self.server_log.stat().st_size if self.server_log.exists() else 0
        cmd = [*self._java_base(java, libs), "kafka.Kafka", str(self.properties_file)]
        with open(self.stdout_log, "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(log_offset)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """SIGTERM the broker, SIGKILL it after ``timeout`` s; return False if none was running."""
        pid = self.pid
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL the broker at once (a crash); return False if none was running."""
        pid = self.pid
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_exit(pid, 10.0)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def __enter__(self) -> LocalKafka:
        """Start the broker."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()

    def __repr__(self) -> str:
        """Show the address and data dir."""
        return f"LocalKafka(bootstrap={self.bootstrap_servers!r}, data_dir={str(self.data_dir)!r})"

    # -- internals ------------------------------------------------------------------------

    def _java_base(self, java: str, libs: Path) -> list[str]:
        return [
            java, *JVM_OPTS,
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", f"-Dkafka.logs.dir={self.data_dir}",
            "-cp", f"{libs}{os.sep}*",
        ]  # fmt: skip

    def _write_properties(self) -> None:
        h, p, c = self.host, self.port, self.controller_port
        lines = [
            "# Written by localkafka on every start; edits are overwritten.",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{h}:{c}",
            f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            f"advertised.listeners=PLAINTEXT://{h}:{p}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.log_dir}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.num.partitions=1",
            "num.partitions=3",
            "auto.create.topics.enable=false",
            "log.retention.hours=24",
            *(f"{key}={value}" for key, value in self.extra_properties.items()),
        ]
        self.properties_file.write_text("\n".join(lines) + "\n")

    def _cluster_id(self) -> str:
        path = self.data_dir / "cluster.id"
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        cid = _new_cluster_id()
        path.write_text(cid + "\n")
        return cid

    def _format_storage(self, java: str, libs: Path) -> None:
        cmd = [
            *self._java_base(java, libs), "kafka.tools.StorageTool", "format",
            "-t", self._cluster_id(), "-c", str(self.properties_file), "--ignore-formatted",
        ]  # fmt: skip
        result = subprocess.run(
            cmd,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise LocalKafkaError(f"formatting KRaft storage in {self.log_dir} failed:\n{output}")

    def _wait_ready(self, log_offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        logged = False
        while True:
            if self._proc.poll() is not None:
                raise LocalKafkaError(
                    f"the Kafka broker exited with code {self._proc.returncode} while starting"
                    f"\n{self._log_tails()}"
                )
            logged = logged or self._log_contains(READY_MESSAGE, log_offset)
            if logged and port_answers(self.host, self.port):
                return
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"the Kafka broker was not ready on {self.bootstrap_servers}"
                    f" after {START_TIMEOUT_S:.0f} s"
                    f"\n{self._log_tails()}"
                )
            time.sleep(POLL_S)

    def _log_contains(self, text: str, offset: int) -> bool:
        if not self.server_log.is_file():
            return False
        with open(self.server_log, "rb") as fh:
            if fh.seek(0, os.SEEK_END) < offset:
                offset = 0  # rolled over since the start
            fh.seek(offset)
            return text.encode() in fh.read()

    def _log_tails(self) -> str:
        parts = [
            f"--- last {LOG_TAIL_LINES} lines of {self.server_log} ---\n{_tail(self.server_log)}"
        ]
        out = _tail(self.stdout_log)
        if out.strip():
            parts.append(f"--- last {LOG_TAIL_LINES} lines of {self.stdout_log} ---\n{out}")
        return "\n".join(parts)

    def _read_pid_file(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_our_broker(self, pid: int) -> bool:
        """Guard against a stale pid file whose pid now belongs to another process."""
        cmdline = _command_line(pid)
        return "kafka.Kafka" in cmdline and str(self.properties_file) in cmdline

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for ``pid`` to exit (reaping it if it is our child)."""
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True
