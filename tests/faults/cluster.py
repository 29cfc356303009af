"""The flow as it runs in production: a Kafka broker and the four services (renewal, careteam,
messaging, journey) as separate processes.

``Cluster`` owns a broker (localkafka, on free ports, in its own directory) and one or more instances
of each service (``python -m rxsm serve <name>``), and can break them: SIGKILL an instance, SIGTERM
it, start it again on the same port and state, kill or restart the broker. Renewal, messaging and
journey keep their state in SQLite files in one data directory, or in the databases given (PostgreSQL), which every
instance of the service shares.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from localkafka import LocalKafka, free_port
from plumbing.flags import DEFAULT_FILE as DEFAULT_FLAGS_FILE
from rxsm.serve import PORT_ENV

SERVICES = ("renewal", "careteam", "messaging", "journey")
STATEFUL = ("renewal", "messaging", "journey")
"""The services with a database; the care-team service keeps nothing."""

FAST_RESTART = {"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "1000"}
"""Broker settings so a broker killed with SIGKILL serves again within seconds of its restart."""

READY_WITHIN = 180.0
STOP_WITHIN = 40.0


class PortTaken(Exception):
    """Another process bound the instance's port between its choice and the instance's start."""


@dataclass
class Instance:
    """One process of a service, on a port of its own that it keeps across restarts."""

    service: str
    index: int
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rxsm", "serve", self.service],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        """Launch and wait until ready; on another port if this one was taken meanwhile."""
        for _ in range(3):
            self.launch()
            try:
                await self.wait_ready()
                return
            except PortTaken:
                self.port = free_port()
                self.env[PORT_ENV] = str(self.port)
        raise RuntimeError(f"{self.name} found no free port")

    async def wait_ready(self, within: float = READY_WITHIN) -> None:
        """Until ``/health`` answers (the consumers and the HTTP API are up)."""
        deadline = asyncio.get_running_loop().time() + within
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if not self.running:
                    if "address already in use" in self.tail(5):
                        raise PortTaken(self.port)
                    raise RuntimeError(f"{self.name} exited while starting:\n{self.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready after {within:.0f} s:\n{self.tail()}"
                    )
                await asyncio.sleep(0.3)

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or committed."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.process.wait)

    async def terminate(self) -> None:
        """SIGTERM, as a rolling restart does: the service drains and exits."""
        if self.process is None or not self.running:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, STOP_WITHIN)
        except subprocess.TimeoutExpired:
            await self.kill()
            raise RuntimeError(f"{self.name} ignored SIGTERM for {STOP_WITHIN:.0f} s") from None

    def tail(self, lines: int = 30) -> str:
        if not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Cluster:
    """A private broker and ``instances`` processes of each service, under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        instances: int = 1,
        database_urls: Mapping[str, str] | None = None,
        otlp_endpoint: str | None = None,
        pycache: Path | None = None,
    ) -> None:
        self.root = root
        self.pycache = pycache or root / "pycache"
        self.kafka = LocalKafka(
            port=free_port(), data_dir=root / "kafka", extra_properties=FAST_RESTART
        )
        self.data_dir = root / "data"
        self.logs_dir = root / "logs"
        self.flags_file = root / "flags.json"
        self.database_urls = dict(database_urls or {})
        if instances > 1 and set(STATEFUL) - set(self.database_urls):
            raise ValueError("instances of a stateful service share one database: give its URL")
        self.otlp_endpoint = otlp_endpoint
        self.instances: dict[str, list[Instance]] = {
            service: [self._instance(service, index) for index in range(instances)]
            for service in SERVICES
        }

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    def database_url(self, service: str) -> str:
        """Where ``service`` keeps its state (SQLite in the data directory unless given)."""
        return (
            self.database_urls.get(service) or f"sqlite+aiosqlite:///{self.data_dir}/{service}.db"
        )

    def _instance(self, service: str, index: int) -> Instance:
        port = free_port()
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("RXSM_", "KAFKA_", "OTEL_", "PYTHONDONTWRITEBYTECODE"))
        }
        env = {
            **inherited,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "RXSM_DATA_DIR": str(self.data_dir),
            "RXSM_FLAGS_FILE": str(self.flags_file),
            "RXSM_RETRY_BACKOFF_SECONDS": "0.05",
            "RXSM_REDELIVERY_DELAY_SECONDS": "1",
            "RXSM_LOG_LEVEL": "INFO",
            "RXSM_ENV": "development",
            PORT_ENV: str(port),
            # Restarts import from cached bytecode, kept out of the source tree.
            "PYTHONPYCACHEPREFIX": str(self.pycache),
        }
        if service in self.database_urls:
            env["RXSM_DATABASE_URL"] = self.database_urls[service]
        if self.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        return Instance(service, index, port, env, self.logs_dir / f"{service}-{index}.log")

    async def start(self) -> None:
        """The broker, then every instance, until all serve."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEFAULT_FLAGS_FILE, self.flags_file)
        await asyncio.to_thread(self.kafka.start)
        await self.start_services()

    async def start_services(self) -> None:
        instances = [i for group in self.instances.values() for i in group if not i.running]
        await asyncio.gather(*(instance.start() for instance in instances))

    async def stop_services(self) -> None:
        """SIGTERM every instance and wait for each to drain and exit."""
        await asyncio.gather(*(i.terminate() for group in self.instances.values() for i in group))

    def instance(self, service: str, index: int = 0) -> Instance:
        return self.instances[service][index]

    async def kill(self, service: str, index: int = 0) -> None:
        await self.instance(service, index).kill()

    async def restart(self, service: str, index: int = 0) -> None:
        await self.instance(service, index).start()

    async def kill_broker(self) -> None:
        await asyncio.to_thread(self.kafka.kill)

    async def start_broker(self) -> None:
        await asyncio.to_thread(self.kafka.start)

    def urls(self, service: str) -> list[str]:
        """The running instances of ``service``."""
        return [i.url for i in self.instances[service] if i.running]

    def log_lines(self) -> list[str]:
        return [
            line
            for log in sorted(self.logs_dir.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()
        ]

    async def close(self) -> None:
        """Stop whatever still runs: services gracefully (killed if they hang), then the broker."""
        try:
            await self.stop_services()
        finally:
            for group in self.instances.values():
                for instance in group:
                    await instance.kill()
            await asyncio.to_thread(self.kafka.stop)
