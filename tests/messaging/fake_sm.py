"""A small SM-compatible HTTP API on 127.0.0.1 for tests, that can be told to fail, time out, or
answer any status for Oracle Health messages, poll by poll (the calls ``HttpSecureMessaging``
makes). Renewals arrive at their own endpoint, as at SM (``message/renewal``)."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4


@dataclass
class SmBehaviour:
    """What the fake answers; tests change it between calls."""

    failure: tuple[int, str | None] | None = None  # (HTTP status, errorCode) for every call
    delay_seconds: float = 0.0  # answer this late (longer than the client's timeout: a timeout)
    oh_teams: set[int] = field(default_factory=set)  # recipients whose messages are accepted first
    oh_outcome: str = "SENT"  # what an OH message becomes: a final status, or one it keeps forever
    pending_polls: int = 1  # status polls answered PENDING before the outcome
    poll_script: list[tuple[int, Any]] = field(default_factory=list)
    """(HTTP status, answer) of the next status polls, in order, before the rule above."""


@dataclass
class StoredMessage:
    id: str
    path: str  # the endpoint it was sent to
    payload: dict[str, Any]
    polls: int = 0


class FakeSm:
    """``with FakeSm() as sm:`` serves on ``sm.url`` until the block ends."""

    def __init__(self, recipients: dict[str, Any] | None = None) -> None:
        self.recipients = recipients or {}
        self.behaviour = SmBehaviour()
        self.messages: dict[str, StoredMessage] = {}
        self.by_key: dict[str, str] = {}
        self.sends = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> "FakeSm":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        """Do the call, then answer (late, when told to: the work is done but the client gave up)."""
        behaviour = self.behaviour
        if behaviour.failure is not None:
            status, code = behaviour.failure
            return status, {"errorCode": code} if code else "upstream broke"
        parts = path.strip("/").split("/")
        with self._lock:
            if method == "GET" and parts[0] == "veterans" and parts[2:] == ["recipients"]:
                answer = 200, self.recipients.get(parts[1], [{"associatedTriageGroups": 0}])
            elif method == "POST" and parts in (["messages"], ["messages", "renewal"]):
                answer = self._send(path, headers["Idempotency-Key"], json.loads(body))
            elif method == "GET" and parts[0] == "messages" and parts[2:] == ["status"]:
                answer = self._status(parts[1])
            else:
                answer = 404, {"errorCode": "SM904"}
        time.sleep(behaviour.delay_seconds)
        return answer

    def _send(self, path: str, key: str, payload: dict[str, Any]) -> tuple[int, Any]:
        self.sends += 1
        if path.endswith("/renewal") and not payload.get("prescription_id"):
            return 400, "prescription_id is missing"
        if key not in self.by_key:
            message = StoredMessage(id=str(uuid4()), path=path, payload=payload)
            self.messages[message.id] = message
            self.by_key[key] = message.id
        message = self.messages[self.by_key[key]]
        if message.payload["recipient_id"] in self.behaviour.oh_teams:
            return 202, {"id": message.id, "status": "PENDING"}
        return 200, {"id": message.id, "status": "SENT"}

    def _status(self, message_id: str) -> tuple[int, Any]:
        message = self.messages.get(message_id)
        if message is None:
            return 404, {"errorCode": "SM904"}
        message.polls += 1
        if self.behaviour.poll_script:
            return self.behaviour.poll_script.pop(0)
        if message.polls <= self.behaviour.pending_polls:
            return 200, {"status": "PENDING"}
        return 200, {"status": self.behaviour.oh_outcome}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake.answer(method, self.path, self.headers, body)
                data = (
                    json.dumps(answer).encode() if not isinstance(answer, str) else answer.encode()
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler
