"""The HTTP ingress alone: POST /v1/renewals, each with the Medications app's token and a real
request for a new prescription, over keep-alive connections, 202 once the renewal is committed;
beside a bare FastAPI app (bench/bare_app.py) taking the same requests the same way."""

import asyncio
import os
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from bench.harness import Proc, spawn, wait_until_healthy
from demo.requests import renewal_request
from localkafka import free_port
from plumbing.auth import AuthSettings, issue_service_token

CONNECTIONS = 32


def _bodies(count: int) -> list[dict[str, Any]]:
    run = uuid4().hex[:8]
    return [
        renewal_request(f"ingress-{run}-{i}", prescriptionNumber=str(4600000 + i))
        for i in range(count)
    ]


async def _post_all(port: int, count: int, headers: dict[str, str]) -> tuple[float, int]:
    """POST ``count`` requests over ``CONNECTIONS`` keep-alive connections; (seconds, failures)."""
    bodies = _bodies(count)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    url = f"http://127.0.0.1:{port}/v1/renewals"
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    failures = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            try:
                response = await http.post(url, json=body, headers=headers)
                failures += response.status_code != 202
            except httpx.HTTPError:
                failures += 1

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(CONNECTIONS)))
        return time.perf_counter() - started, failures


async def measure_ingress(
    proc: Proc, port: int, count: int, headers: dict[str, str]
) -> dict[str, Any]:
    """req/s, and the server's CPU per request and requests per CPU-second (per core)."""
    await _post_all(port, min(count, 200), headers)  # warm-up
    cpu_before = proc.cpu_seconds()
    seconds, failures = await _post_all(port, count, headers)
    cpu = proc.cpu_seconds() - cpu_before
    return {
        "requests": count,
        "connections": CONNECTIONS,
        "failures": failures,
        "requests_s": round(count / seconds, 1),
        "cpu_ms_per_request": round(cpu / count * 1000, 2),
        "requests_s_per_core": round(count / cpu, 1) if cpu else float("nan"),
    }


async def rxsm_ingress(proc: Proc, port: int, count: int) -> dict[str, Any]:
    token = issue_service_token(AuthSettings())
    return await measure_ingress(proc, port, count, {"Authorization": f"Bearer {token}"})


async def bare_ingress(count: int, logs: Path) -> dict[str, Any]:
    """The same requests to the bare app, served by uvicorn in a process of its own."""
    port = free_port()
    proc = spawn(
        "bare-fastapi",
        [
            "-m",
            "uvicorn",
            "--factory",
            "bench.bare_app:create_app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        {**os.environ},
        logs / "bare-fastapi.log",
    )
    try:
        await wait_until_healthy(proc, port, time.monotonic() + 120)
        return await measure_ingress(proc, port, count, {})
    finally:
        proc.stop()
