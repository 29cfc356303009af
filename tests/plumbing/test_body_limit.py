"""A request body over the limit is refused with 413 ``too_large`` and never held in memory: by its
Content-Length, or as it streams in when it is chunked; the rest is drained so the client reads the 413
on a connection it keeps, unless the body is past what is drained. Every service's app has the limit
(plumbing.http.service_app), in the one Problem shape."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel

from plumbing.http import DRAIN_BYTES, service_app
from plumbing.identity import ServiceIdentity
from plumbing.settings import ServiceSettings
from schemas.vocabulary import Tool

LIMIT = 1_000


class Note(BaseModel):
    text: str


@pytest.fixture
def app() -> Any:
    """A service's app (never started: no broker needed) with one route that reads a JSON body."""
    made = service_app(
        ServiceIdentity("limits-test", Tool.MEDS),
        ServiceSettings(),
        KafkaBroker("127.0.0.1:1"),
        TracerProvider(),
        title="limits",
        description="",
        max_body_bytes=LIMIT,
    )

    @made.post("/notes")
    async def post_note(note: Note) -> dict[str, int]:
        return {"length": len(note.text)}

    return made


class Asgi:
    """One request straight to the ASGI app, recording how much of the body the app asked for."""

    def __init__(self, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        self.chunks = chunks
        self.headers = headers
        self.read = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.read < len(self.chunks):
            self.read += 1
            return {
                "type": "http.request",
                "body": self.chunks[self.read - 1],
                "more_body": self.read < len(self.chunks),
            }
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def call(self, app: Any) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/notes",
            "raw_path": b"/notes",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), *self.headers],
            "client": ("127.0.0.1", 5000),
            "server": ("test", 80),
        }
        await app(scope, self.receive, self.send)
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return start["status"], json.loads(body), dict(start["headers"])


def note(size: int) -> bytes:
    return json.dumps({"text": "x" * (size - len('{"text": ""}'))}).encode()


async def test_a_declared_body_over_the_limit_is_refused_and_the_connection_kept(app: Any) -> None:
    """The client reads the answer once it has sent the body: the rest is read and dropped, so it
    gets the 413 on a connection it may keep."""
    request = Asgi([note(10_000_000)], [(b"content-length", b"10000000")])

    status, answer, headers = await request.call(app)

    assert status == 413
    assert answer["code"] == "too_large" and str(LIMIT) in answer["message"]
    assert request.read == 1, "the body was read to its end, and dropped"
    assert b"connection" not in headers


async def test_a_body_declared_past_what_is_drained_is_refused_unread_and_the_connection_closed(
    app: Any,
) -> None:
    size = DRAIN_BYTES + 1
    request = Asgi([b"x"], [(b"content-length", str(size).encode())])

    status, answer, headers = await request.call(app)

    assert (status, answer["code"]) == (413, "too_large")
    assert request.read == 0, "not a byte of the body was read"
    assert headers[b"connection"] == b"close"


async def test_a_chunked_body_is_counted_as_it_streams_and_stopped_past_the_limit(
    app: Any,
) -> None:
    chunks = [b'{"text": "'] + [b"x" * 400] * 25_000 + [b'"}']
    request = Asgi(chunks, [(b"transfer-encoding", b"chunked")])

    status, answer, headers = await request.call(app)

    assert (status, answer["code"]) == (413, "too_large")
    assert request.read == len(chunks), "the rest was drained, not handed to the app"
    assert b"connection" not in headers


async def test_a_chunked_body_past_what_is_drained_closes_the_connection(app: Any) -> None:
    megabyte = b"x" * 2**20
    chunks = [b'{"text": "'] + [megabyte] * (DRAIN_BYTES // 2**20 + 2)
    request = Asgi(chunks, [(b"transfer-encoding", b"chunked")])

    status, answer, headers = await request.call(app)

    assert (status, answer["code"]) == (413, "too_large")
    assert request.read < len(chunks)
    assert headers[b"connection"] == b"close"


async def test_a_body_within_the_limit_is_read_whole(app: Any) -> None:
    for chunks, headers in [
        ([note(LIMIT)], [(b"content-length", str(LIMIT).encode())]),
        ([note(LIMIT)[:500], note(LIMIT)[500:]], [(b"transfer-encoding", b"chunked")]),
    ]:
        status, answer, _ = await Asgi(chunks, headers).call(app)
        assert (status, answer) == (200, {"length": LIMIT - len('{"text": ""}')})


async def test_a_client_streaming_10_mb_gets_the_problem_shape(app: Any) -> None:
    async def ten_megabytes() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(160):
            yield b"x" * 65_536
        yield b'"}'

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://limits"
    ) as client:
        answer = await client.post("/notes", content=ten_megabytes())

    assert answer.status_code == 413
    assert set(answer.json()) == {"code", "message"} and answer.json()["code"] == "too_large"
