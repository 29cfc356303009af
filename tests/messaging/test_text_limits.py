"""What a message may hold: the subject's and the body's lengths, and no character that is not text.

- Subject: at most 50 characters, as VA's compose form takes (vets-website
  ``src/applications/mhv-secure-messaging/components/ComposeForm/ComposeForm.jsx``, the subject's
  ``maxlength="50"``).
- Body: at most 20,000 characters, rxsm's own (VA sets none: the same form's body has no maxlength,
  vets-api's ``app/models/message.rb`` validates only ``presence``).
- What a Veteran writes is refused with the field and the character's code point when it holds a
  control character (but tab, line feed, carriage return), a bidirectional control or a lone
  surrogate; what the prefill writes from upstream text has them taken out.
"""

import pytest

from schemas.records import (
    CODE_LENGTH,
    INSTRUCTIONS_LENGTH,
    MEDICATION_NAME_LENGTH,
    MOST_COUNTED,
    NAME_LENGTH,
    REASON_LENGTH,
    Prescription,
)
from schemas.vocabulary import Category
from services.messaging.domain import (
    BODY_MAX_LENGTH,
    RENEWAL_SUBJECT,
    DraftContent,
    DraftEdit,
    SmError,
    check_body,
    check_subject,
    renewal_body,
    revise,
)

REFUSED = {
    "NUL": ("\x00", "U+0000"),
    "ESC": ("\x1b", "U+001B"),
    "DEL": ("\x7f", "U+007F"),
    "NEL (C1)": ("\x85", "U+0085"),
    "RIGHT-TO-LEFT OVERRIDE": ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    "RIGHT-TO-LEFT ISOLATE": ("\u2067", "U+2067 (RIGHT-TO-LEFT ISOLATE)"),
    "RIGHT-TO-LEFT MARK": ("\u200f", "U+200F (RIGHT-TO-LEFT MARK)"),
    "ARABIC LETTER MARK": ("\u061c", "U+061C (ARABIC LETTER MARK)"),
    "lone surrogate": ("\ud800", "U+D800"),
}


def draft() -> DraftContent:
    return DraftContent(renewal=False, category=Category.OTHER, subject="Hi", body="Hello")


def refusal(call: object, *args: object) -> SmError:
    with pytest.raises(SmError) as error:
        call(*args)  # type: ignore[operator]
    return error.value


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_body_holding_a_control_or_bidi_character_is_refused_naming_it(name: str) -> None:
    character, named = REFUSED[name]
    error = refusal(revise, draft(), DraftEdit(body=f"Please refill{character} it"), [], set())

    assert (error.status, error.code, error.field) == (422, "invalid_character", "body")
    assert named in error.message
    assert "refill" not in error.message, "the message never echoes what the Veteran wrote"


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_subject_holding_one_is_refused_naming_the_subject(name: str) -> None:
    character, named = REFUSED[name]
    error = refusal(check_subject, f"Refill{character}")

    assert (error.code, error.field) == ("invalid_character", "subject")
    assert named in error.message


def test_new_lines_tabs_and_every_other_script_are_text() -> None:
    body = "Line one\r\nLine two\n\tindented: é, ü, 漢字, עברית, العربية, 👩‍⚕️ (a joiner)"
    content, changed = revise(draft(), DraftEdit(body=body), [], set())
    assert (content.body, changed) == (body, ["body"])


def test_the_subject_takes_50_characters_as_vas_compose_form() -> None:
    check_subject("x" * 50)
    error = refusal(check_subject, "x" * 51)
    assert (error.code, error.field) == ("subject_too_long", "subject")


def test_the_body_takes_20000_characters() -> None:
    check_body("x" * 20_000)
    error = refusal(check_body, "x" * 20_001)
    assert (error.status, error.code, error.field) == (422, "body_too_long", "body")
    assert "20,000" in error.message


def test_a_10_mb_body_is_refused_before_it_is_kept() -> None:
    error = refusal(revise, draft(), DraftEdit(body="x" * 10_000_000), [], set())
    assert error.code == "body_too_long"


def test_the_prefill_takes_controls_out_of_upstream_text_and_keeps_its_lines() -> None:
    rx = Prescription(
        prescriptionId="1",
        prescriptionName="LISINOPRIL\x00 10MG\u202e TAB",
        sig="TAKE ONE\x1b[31m TABLET\nBY MOUTH DAILY",
        reason="\u202e\u2066",
    )
    body = renewal_body(rx)

    lines = body.split("\n")
    assert lines[0] == "Medication name, strength, and form: LISINOPRIL 10MG TAB"
    assert lines[2:4] == ["Instructions: TAKE ONE[31m TABLET", "BY MOUTH DAILY"]
    assert "Reason for use: Reason for use not available" in lines, (
        "a value of nothing but controls is missing: VA's fallback"
    )
    check_body(body)


def test_the_longest_prefill_the_prescription_limits_allow_fits_in_a_body() -> None:
    widest = "\U0001f48a"
    rx = Prescription(
        prescriptionId="1",
        prescriptionName=widest * MEDICATION_NAME_LENGTH,
        prescriptionNumber=widest * CODE_LENGTH,
        sig=widest * INSTRUCTIONS_LENGTH,
        providerFirstName=widest * NAME_LENGTH,
        providerLastName=widest * NAME_LENGTH,
        refillRemaining=MOST_COUNTED,
        expirationDate="2026-09-30",
        reason=widest * REASON_LENGTH,
        sortedDispensedDate="2026-09-30",
        quantity=widest * CODE_LENGTH,
    )
    body = renewal_body(rx)

    assert len(body) < BODY_MAX_LENGTH / 4
    check_body(body)
    check_subject(RENEWAL_SUBJECT)
