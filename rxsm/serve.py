"""Serving one of the four services (renewal, careteam, messaging, journey) with uvicorn, on its own
port."""

import os
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    factory: str
    port: int


SERVICES = {
    service.name: service
    for service in (
        ServiceProcess("renewal", "services.renewal.app:create_app", 8001),
        ServiceProcess("careteam", "services.careteam.app:create_app", 8002),
        ServiceProcess("messaging", "services.messaging.app:create_app", 8003),
        ServiceProcess("journey", "services.journey.app:create_app", 8004),
    )
}
PORT_ENV = "RXSM_HTTP_PORT"
HOST_ENV = "RXSM_HTTP_HOST"


SERVER_OPTIONS: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    "reset_contextvars": True,
}
"""How every rxsm service is served (tests serve the apps with the same options).

``reset_contextvars``: each request runs in a fresh context. Without it, once a request body passes
uvicorn's 64 KiB high-water mark, reading resumes from inside that request's task, so every later request
on the keep-alive connection starts inside its trace (CPython #140947, uvicorn #2167): different
Veterans' renewals would share one trace.
"""


def serve(name: str) -> None:
    """Run service ``name`` until SIGTERM/SIGINT (uvicorn shuts down gracefully)."""
    from plumbing.settings import DefaultSecrets

    service = SERVICES[name]
    try:
        uvicorn.run(
            service.factory,
            factory=True,
            host=os.environ.get(HOST_ENV, "127.0.0.1"),
            port=int(os.environ.get(PORT_ENV, service.port)),
            **SERVER_OPTIONS,
        )
    except DefaultSecrets as refused:
        raise SystemExit(f"rxsm {name}: {refused}") from None
