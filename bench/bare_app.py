"""The floor the HTTP ingress is measured against: a bare FastAPI app that validates a renewal
request as the renewal service does (``RenewalRequest``) and answers 202, with nothing behind it (no
token check, no database, no Kafka, no telemetry). Served by uvicorn as the services are."""

from uuid import uuid4

from fastapi import FastAPI

from schemas.records import RenewalRequest


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/renewals", status_code=202)
    async def post_renewal(body: RenewalRequest) -> dict[str, str]:
        return {"renewal_id": str(uuid4()), "status": "accepted"}

    return app
