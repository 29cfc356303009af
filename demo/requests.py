"""The demo Veteran's renewal request, as the Medications app sends it (the demo, tests, bench)."""

from typing import Any
from uuid import uuid4

VETERAN = "1012845331V153043"
"""VistA only, Cheyenne (442); one allowed care team, 1013155 (services/careteam/data/README.md)."""


def renewal_request(prescription_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """A renewable VistA prescription of the demo Veteran; ``changes`` override prescription fields."""
    prescription = {
        "prescriptionId": prescription_id or str(uuid4()),
        "prescriptionName": "LISINOPRIL 10MG TAB",
        "prescriptionNumber": "3636691",
        "dispStatus": "Active",
        "refillStatus": "active",
        "refillRemaining": 0,
        "expirationDate": "2027-03-05T05:00:00.000Z",
        "isRefillable": False,
        "isRenewable": True,
        "prescriptionSource": "VA",
        "stationNumber": "442",
        "sig": "TAKE ONE TABLET BY MOUTH DAILY",
        "reason": "Blood pressure",
        "providerFirstName": "Jane",
        "providerLastName": "Smith",
        "quantity": 30,
        "sortedDispensedDate": "2026-10-01",
        **changes,
    }
    return {
        "veteranId": VETERAN,
        "prescription": prescription,
        "facilities": [{"stationNumber": "442", "ehr": "vista"}],
    }
