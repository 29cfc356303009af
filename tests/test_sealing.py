"""PHI travels sealed: on Kafka an event's Veteran id and prescription are one encrypted value that
only the services' keys open, bound to the event it belongs to."""

import base64
import json
import os
from collections.abc import Iterator
from uuid import uuid4

import pytest
from pydantic import ValidationError

from schemas.events import CareTeamUnavailable, RenewalRequested, any_event
from schemas.records import Prescription
from schemas.sealing import Keyring, SealError, use_keyring
from schemas.vocabulary import Ehr, UnavailableReason

VETERAN = "1012845331V153043"
SIG = "TAKE ONE TABLET BY MOUTH AT BEDTIME"


def key(kid: str) -> str:
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


@pytest.fixture(autouse=True)
def ring() -> Iterator[str]:
    """A fresh key for each test; the process's keyring is restored afterwards."""
    text = key("k1")
    use_keyring(Keyring.parse(text))
    yield text
    use_keyring(None)


def requested() -> RenewalRequested:
    return RenewalRequested(
        renewal_id=uuid4(),
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        prescription=Prescription(prescriptionId="22565799", sig=SIG, providerLastName="SMITH"),
    )


def test_on_the_wire_the_phi_fields_are_one_sealed_value_and_read_back_whole() -> None:
    event = requested()
    wire = event.model_dump_json()

    assert VETERAN not in wire and SIG not in wire and "SMITH" not in wire
    document = json.loads(wire)
    assert "veteran_id" not in document and "prescription" not in document
    assert document["sealed"]["alg"] == "A256GCM" and document["sealed"]["kid"] == "k1"
    assert document["renewal_id"] == str(event.renewal_id), "the envelope stays readable"
    assert any_event.validate_json(wire) == event


def test_in_process_the_fields_stay_plain() -> None:
    assert requested().model_dump()["veteran_id"] == VETERAN


def test_every_event_with_a_veteran_seals_it() -> None:
    event = CareTeamUnavailable(
        renewal_id=uuid4(),
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        reason=UnavailableReason.NO_ASSOCIATIONS,
    )
    assert VETERAN not in event.model_dump_json()
    assert any_event.validate_json(event.model_dump_json()) == event


def test_a_sealed_value_moved_to_another_event_does_not_open() -> None:
    one, other = (
        json.loads(requested().model_dump_json()),
        json.loads(requested().model_dump_json()),
    )
    other["sealed"] = one["sealed"]
    with pytest.raises(ValidationError, match="not this record's"):
        any_event.validate_python(other)


def test_an_altered_sealed_value_does_not_open() -> None:
    document = json.loads(requested().model_dump_json())
    ciphertext = bytearray(base64.b64decode(document["sealed"]["ciphertext"]))
    ciphertext[0] ^= 1
    document["sealed"]["ciphertext"] = base64.b64encode(ciphertext).decode()
    with pytest.raises(ValidationError, match="altered"):
        any_event.validate_python(document)


def test_keys_rotate_without_a_stop(ring: str) -> None:
    """Events sealed under the old key still open once a new key seals new events."""
    old = requested().model_dump_json()
    use_keyring(Keyring.parse(f"{key('k2')},{ring}"))
    new = requested().model_dump_json()

    assert json.loads(new)["sealed"]["kid"] == "k2"
    assert any_event.validate_json(old).veteran_id == VETERAN
    use_keyring(Keyring.parse(key("k3")))
    with pytest.raises(ValidationError, match="lacks"):
        any_event.validate_json(old)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "names no key"),
        ("k1:not base64!", "not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "32 bytes"),
        (":" + base64.b64encode(bytes(32)).decode(), "32 bytes"),
    ],
)
def test_a_bad_key_setting_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Keyring.parse(text)


def test_a_seal_error_holds_no_phi() -> None:
    ring = Keyring.parse(key("k1"))
    sealed = ring.seal(VETERAN.encode(), b"renewal.requested:1")
    with pytest.raises(SealError) as raised:
        ring.open(sealed, b"renewal.requested:2")
    assert VETERAN not in str(raised.value)
