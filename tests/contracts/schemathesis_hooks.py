"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.contracts.schemathesis_hooks``): half of what it
generates for the two create operations is made a request the service accepts, so stateful testing
follows the OpenAPI links (create, then read, edit, delete, send) instead of stopping at a refusal.

A created draft needs a care team the Veteran may message, and a renewal a renewable prescription:
facts of the Veteran's records no schema can state. The other half stays as generated, refusals
included."""

import hashlib
import json
import os
from datetime import date, timedelta
from typing import Any

import schemathesis

RECIPIENT_ENV = "RXSM_CONTRACT_RECIPIENT_ID"
"""One of the care teams of the Veteran whose token the run uses."""
VETERAN_ENV = "RXSM_CONTRACT_VETERAN_ID"


def _operation(ctx: Any) -> tuple[str, str]:
    operation = ctx.operation
    return (operation.method.upper(), operation.path) if operation is not None else ("", "")


def _kept(body: dict[str, Any]) -> bool:
    """Whether to leave a generated body as it is: decided by the body itself, so a run replays."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()
    return digest[0] % 2 == 1


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    if not isinstance(body, dict) or _kept(body):
        return body
    operation = _operation(ctx)
    if operation == ("POST", "/v1/drafts") and RECIPIENT_ENV in os.environ:
        return {
            **body,
            "recipient_id": int(os.environ[RECIPIENT_ENV]),
            "subject": "Question about my medication",
            "body": "Can you tell me when I should take it?",
        }
    if operation == ("POST", "/v1/renewals") and VETERAN_ENV in os.environ:
        return renewable_request(os.environ[VETERAN_ENV], body)
    return body


def renewable_request(veteran_id: str, generated: dict[str, Any]) -> dict[str, Any]:
    """A VistA prescription of Cheyenne (442) with no refills left and not expired: renewable by
    VA's rule (domain.md); its id from the generated body, so each differs."""
    digest = hashlib.sha256(json.dumps(generated, sort_keys=True, default=str).encode())
    return {
        "veteranId": veteran_id,
        "prescription": {
            "prescriptionId": str(int(digest.hexdigest()[:12], 16)),
            "prescriptionName": "ATORVASTATIN 40MG TAB",
            "prescriptionNumber": "3636712",
            "dispStatus": "Active",
            "refillRemaining": 0,
            "expirationDate": (date.today() + timedelta(days=45)).isoformat(),
            "isRefillable": False,
            "isRenewable": True,
            "prescriptionSource": "VA",
            "stationNumber": "442",
            "sig": "TAKE ONE TABLET BY MOUTH AT BEDTIME",
            "quantity": 90,
            "sortedDispensedDate": (date.today() - timedelta(days=80)).isoformat(),
        },
        "facilities": [{"stationNumber": "442", "ehr": "vista"}],
    }
