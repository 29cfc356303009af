"""Serving one of the three services with uvicorn, on its own port."""

import os
from dataclasses import dataclass

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
    )
}
PORT_ENV = "RXSM_HTTP_PORT"
HOST_ENV = "RXSM_HTTP_HOST"


def serve(name: str) -> None:
    """Run service ``name`` until SIGTERM/SIGINT (uvicorn shuts down gracefully)."""
    service = SERVICES[name]
    uvicorn.run(
        service.factory,
        factory=True,
        host=os.environ.get(HOST_ENV, "127.0.0.1"),
        port=int(os.environ.get(PORT_ENV, service.port)),
        log_config=None,
        access_log=False,
    )
