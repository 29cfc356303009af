"""VA's own public prescription records (tests/fixtures/va/prescriptions; SOURCES names each file's VA
repository, path and commit), read as the Medications app has them."""

import json
from pathlib import Path
from typing import Any

PRESCRIPTIONS = Path(__file__).resolve().parent / "fixtures" / "va" / "prescriptions"


def prescription_records(name: str) -> list[dict[str, Any]]:
    """The records of one fixture file, whatever VA's envelope: a JSON:API list or details answer
    (their ``attributes``, and a details answer's grouped medications), or unified health data's
    VistA medication list."""
    document = json.loads((PRESCRIPTIONS / name).read_text())
    if "vista" in document:
        found: list[dict[str, Any]] = document["vista"]["medicationList"]["medication"]
        return found
    data = document["data"]
    items = data if isinstance(data, list) else [data]
    found = [item["attributes"] for item in items]
    return found + [g for record in found for g in record.get("groupedMedications") or []]


def every_prescription_record() -> dict[tuple[str, str], dict[str, Any]]:
    """(file, prescription id) -> record, for every record of every fixture file."""
    return {
        (name, str(record["prescriptionId"])): record
        for name in sorted(str(p.relative_to(PRESCRIPTIONS)) for p in PRESCRIPTIONS.rglob("*.json"))
        for record in prescription_records(name)
    }


def prescription_record(name: str, prescription_id: int | str) -> dict[str, Any]:
    (record,) = [
        r for r in prescription_records(name) if str(r["prescriptionId"]) == str(prescription_id)
    ]
    return record
