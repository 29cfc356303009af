"""The benchmark stops what it starts, and does not wait on a service that has died."""

import asyncio
import time

import pytest

from bench.harness import RUNNING, spawn, stop_everything
from bench.rxsm_bench import Services, wait_healthy
from localkafka import free_port

SLEEPER = ["-c", "import time; time.sleep(600)"]


def test_stop_everything_ends_every_process_the_bench_spawned() -> None:
    procs = [spawn("sleeper-a", SLEEPER), spawn("sleeper-b", SLEEPER)]

    stop_everything()

    assert all(proc.process.poll() is not None for proc in procs)
    assert RUNNING == []


def test_a_service_that_exits_ends_the_wait_for_health_at_once() -> None:
    dead = spawn("renewal-0", ["-c", "raise SystemExit(3)"])
    dead.process.wait()
    services = Services([dead], {"renewal": [free_port()]})
    started = time.monotonic()

    with pytest.raises(RuntimeError, match="renewal-0 exited with code 3"):
        asyncio.run(wait_healthy(services, within=60))

    assert time.monotonic() - started < 5
    stop_everything()
