"""Secure Messaging rules for drafts, the prefilled renewal message and sending: pure, no I/O.

Domain facts: domain.md sections 3 (care teams), 4 (the prefilled message, sending) and 5 (SM error codes).
"""

import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Literal

from schemas.events import Platform, TeamSelection
from schemas.records import CareTeam, Prescription
from schemas.vocabulary import Category, Ehr, UnavailableReason

RENEWAL_SUBJECT = "Renewal Needed"
SUBJECT_MAX_LENGTH = 50
"""Characters of a subject: VA's compose form takes 50 (vets-website
``src/applications/mhv-secure-messaging/components/ComposeForm/ComposeForm.jsx``, the subject's
``maxlength="50"``); MHV's database holds 512, and the clinicians' application shows 50."""
BODY_MAX_LENGTH = 20_000
"""Characters of a message body: rxsm's own. VA sets none (the compose form's body has no maxlength;
vets-api's ``Message`` validates only that the body is present; MHV stores it as a CLOB). 20,000 is
some ten pages, and over four times the longest prefilled renewal message the prescription's
limits allow (tests/messaging/test_text_limits.py)."""

UNSAFE_CHARACTER = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # controls, but tab, line feed, carriage return
    r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional controls
    r"\ud800-\udfff]"  # lone surrogates
)
"""What text in a message must not hold: control characters (C0, DEL and C1; tab, line feed and
carriage return are text), the bidirectional formatting controls (Unicode's Bidi_Control: ALM, LRM,
RLM, the embeddings and overrides U+202A-U+202E, the isolates U+2066-U+2069), which make text read
otherwise than it is stored, and lone surrogates, which no UTF-8 can carry."""


def unsafe_character(text: str) -> str | None:
    """The first character of ``text`` a message must not hold, if any."""
    found = UNSAFE_CHARACTER.search(text)
    return found.group() if found else None


def without_unsafe_characters(text: str) -> str:
    """``text`` without the characters a message must not hold; newlines and tabs stay."""
    return UNSAFE_CHARACTER.sub("", text)


def code_point(character: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE)``, or ``U+0000`` for a character without a name."""
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X}" + (f" ({name})" if name else "")


RENEWAL_LABELS = (
    "Medication name, strength, and form",
    "Prescription number",
    "Instructions",
    "Provider who prescribed it",
    "Number of refills left",
    "Prescription expiration date",
    "Reason for use",
    "Last filled on",
    "Quantity",
)
"""The nine lines of the prefilled renewal message, in VA's order (vets-website
``src/applications/mhv-secure-messaging/util/helpers.js``, ``buildRxRenewalMessageBody``)."""

RENEWAL_FALLBACKS = (
    "",
    "Prescription number not available",
    "Instructions not available",
    "Provider name not available",
    "Number of refills left not available",
    "Date not available",
    "Reason for use not available",
    "Not filled yet",
    "Quantity not available",
)
"""What VA's builder writes on each line (same order as the labels) when the prescription has no
value for it: the medication's name has no fallback, the line ends with ``": "``."""

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def long_date(value: date) -> str:
    """``March 5, 2026``: moment's ``MMMM D, YYYY`` as VA's ``dateFormat`` writes it (English month,
    day unpadded), whatever the process's locale."""
    return f"{_MONTHS[value.month - 1]} {value.day}, {value.year}"


def _provider(rx: Prescription) -> str:
    """VA's ``[providerFirstName, providerLastName].filter(Boolean).join(' ')``: the names that are
    there, as they come."""
    return " ".join(name for name in (rx.providerFirstName, rx.providerLastName) if name)


def _count(value: int | None) -> str | None:
    """The number of refills left: 0 is written ``0``; only a missing value takes the fallback."""
    return None if value is None else str(value)


def _date(value: date | None) -> str | None:
    return long_date(value) if value else None


def _values(rx: Prescription | None) -> tuple[str, ...]:
    """What VA's builder writes after each label for a prescription it has: the value as it comes
    (not trimmed, not joined onto one line), or the line's fallback where the value is missing or
    empty (JavaScript's ``value || fallback``). The last filled date is ``sortedDispensedDate`` only."""
    if rx is None:
        return RENEWAL_FALLBACKS
    found = (
        rx.prescriptionName,
        rx.prescriptionNumber,
        rx.sig,
        _provider(rx),
        _count(rx.refillRemaining),
        _date(rx.expirationDate),
        rx.reason,
        _date(rx.sortedDispensedDate),
        rx.quantity,
    )
    return tuple(
        without_unsafe_characters(value or "") or fallback
        for value, fallback in zip(found, RENEWAL_FALLBACKS, strict=True)
    )


def prescription_loaded(prescription: Prescription | None) -> bool:
    """Whether SM has the prescription's data: something besides its id. SM with nothing but the id
    is where VA's SM stands when loading the prescription failed (its ``rxError``)."""
    if prescription is None:
        return False
    fields = prescription.model_dump(exclude={"prescriptionId"}, exclude_none=True)
    return bool(fields)


def renewal_body(prescription: Prescription | None, rx_error: bool | None = None) -> str:
    """The prefilled renewal message, byte for byte as VA's ``buildRxRenewalMessageBody(rx, rxError)``
    writes it: nine ``Label: value`` lines joined by a newline, each value with its fallback.

    Upstream text is written without the characters a message must not hold (``UNSAFE_CHARACTER``:
    controls other than newlines and tabs, bidirectional controls): VA's builder writes values as
    they come, but such a character is not the Veteran's to fix, and it would read otherwise than it
    is stored. A value of nothing else takes its fallback. Text without them is VA's, byte for byte.

    ``rx_error`` is VA's ``rxError``, the prescription could not be loaded: every line is its label
    and ``": "``, nothing after it. Left out, it is decided as the service decides it:
    ``not prescription_loaded(prescription)``. A missing prescription with ``rx_error=False`` gets
    every fallback, as in VA."""
    if rx_error is None:
        rx_error = not prescription_loaded(prescription)
    values = ("",) * len(RENEWAL_LABELS) if rx_error else _values(prescription)
    return "\n".join(
        f"{label}: {value}" for label, value in zip(RENEWAL_LABELS, values, strict=True)
    )


ErrorKind = Literal["sm_refused", "sm_failed", "request_refused"]
"""What failed, for a span's ``error.type``: SM refused the request, SM failed it, or the request has
something the Veteran must fix (or names nothing rxsm has)."""


class SmError(Exception):
    """An error a request ends with: its code, the HTTP status, what the Veteran can do, whether a
    retry may pass, and what failed.

    ``message`` is shown to the Veteran and logged: it never holds PHI.
    """

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        retryable: bool = False,
        kind: ErrorKind = "request_refused",
        *,
        field: str | None = None,
        details: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.status = status
        self.message = message
        self.retryable = retryable
        self.kind: ErrorKind = kind
        self.field = field
        """The request's field the Veteran must fix, when it is one field."""
        self.details = dict(details or {})
        """More for the answer, beside its code and message (no PHI)."""

    @property
    def error_type(self) -> ErrorKind:
        return self.kind


@dataclass(frozen=True)
class ErrorCode:
    """One error code: its HTTP status, what it means, what rxsm tells the Veteran, whether sending
    again may pass, and what failed."""

    status: int
    meaning: str
    message: str
    retryable: bool
    kind: ErrorKind

    def error(self, code: str) -> SmError:
        return SmError(code, self.status, self.message, self.retryable, self.kind)


_UNAVAILABLE = "Secure Messaging is unavailable. Try again later."

SM_ERRORS: dict[str, ErrorCode] = {
    "SM119": ErrorCode(
        422,
        "Triage team does not exist",
        "That care team isn't one you can message. Choose another care team.",
        False,
        "sm_refused",
    ),
    "SM129": ErrorCode(
        422,
        "Unable to reply because you are no longer associated with this Triage Team",
        "You're no longer connected to that care team. Choose another one.",
        False,
        "sm_refused",
    ),
    "SM151": ErrorCode(
        422,
        "User is blocked from the Facility",
        "You can't send messages to that care team. Choose another care team.",
        False,
        "sm_refused",
    ),
    "SM900": ErrorCode(503, "Service is temporarily unavailable", _UNAVAILABLE, True, "sm_failed"),
    "SM901": ErrorCode(503, "Service is temporarily unavailable", _UNAVAILABLE, True, "sm_failed"),
    "SM902": ErrorCode(503, "Service is temporarily unavailable", _UNAVAILABLE, True, "sm_failed"),
    "SM903": ErrorCode(503, "Service is temporarily unavailable", _UNAVAILABLE, True, "sm_failed"),
    "SM904": ErrorCode(
        404,
        "Message requested could not be found",
        "Secure Messaging can't find that message.",
        False,
        "sm_refused",
    ),
    "SM98": ErrorCode(
        400,
        "Oracle Health message send failed",
        "Your Oracle Health care team's system didn't take the message. You can send it again.",
        False,
        "sm_failed",
    ),
    "SM99": ErrorCode(
        502,
        "Something went wrong. Please try again later.",
        "Secure Messaging couldn't handle the request. Try again later.",
        True,
        "sm_failed",
    ),
}
"""SM's error codes with VA's HTTP status and meaning (vets-api ``config/locales/exceptions.en.yml``,
the ``detail`` of each code). SM98 is raised by vets-api itself when an Oracle Health message ends
FAILED or INVALID (``lib/sm/client/message_status.rb``); SM901 is also how rxsm's HTTP adapter
reports an SM it cannot reach or that does not answer in time. Retryable is rxsm's: sending again
retries the same attempt (same idempotency key)."""

DRAFT_NOT_FOUND = "draft_not_found"
OH_SEND_TIMEOUT = "oh_send_timeout"

RXSM_ERRORS: dict[str, ErrorCode] = {
    DRAFT_NOT_FOUND: ErrorCode(
        404,
        "No such draft for this Veteran: never made, sent, deleted, or another Veteran's",
        "Draft not found.",
        False,
        "request_refused",
    ),
    OH_SEND_TIMEOUT: ErrorCode(
        504,
        "Oracle Health did not give the message a final status within the polling bound "
        "(vets-api: a gateway timeout, 504)",
        "Your Oracle Health care team's system hasn't confirmed the message yet. Send it again to "
        "check; it won't be sent twice.",
        True,
        "sm_failed",
    ),
}
"""rxsm's own codes, named apart from SM's: a draft rxsm does not hold, and an Oracle Health send
whose status polling ran out of time (sending again resumes polling the same message)."""


def sm_error(code: str) -> SmError:
    """The SM error of ``code``; a code VA does not define is SM's generic error, SM99."""
    known = code if code in SM_ERRORS else "SM99"
    return SM_ERRORS[known].error(known)


def draft_not_found() -> SmError:
    return RXSM_ERRORS[DRAFT_NOT_FOUND].error(DRAFT_NOT_FOUND)


CARE_TEAM_UNAVAILABLE = "care_team_unavailable"

UNAVAILABLE_MESSAGES = {
    UnavailableReason.NO_ASSOCIATIONS: "You're not connected to any care teams in this messaging "
    "tool. If you need to contact your care team, call your VA health facility.",
    UnavailableReason.ALL_BLOCKED: "You can't send messages to your care teams right now. If you "
    "need to contact your care teams, call your VA health facility.",
    UnavailableReason.FACILITY_MIGRATING: "You can't send messages to your care teams right now: "
    "your facility is moving to a new health record system. If you need to contact your care "
    "teams, call your VA health facility.",
    UnavailableReason.DIRECTORY_ERROR: "We couldn't find your care teams, so there is no renewal "
    "message to send. Try asking for the renewal again later, or call your VA health facility.",
}
"""What the Veteran is told when no care team can receive the renewal. No associations and all
blocked are VA's own alert (vets-website ``src/applications/mhv-secure-messaging/util/constants.js``,
``BlockedTriageAlertText``: its title, then its message); the other two reasons are rxsm's."""


def care_team_unavailable(reason: UnavailableReason) -> SmError:
    """The renewal has no draft, and never will: no care team could receive it (404, with SM's
    reason). The same answer as ``draft_not_found`` for a client that reads the status alone."""
    return SmError(
        CARE_TEAM_UNAVAILABLE,
        404,
        UNAVAILABLE_MESSAGES[reason],
        details={"reason": reason.value},
    )


def oh_send_timeout() -> SmError:
    return RXSM_ERRORS[OH_SEND_TIMEOUT].error(OH_SEND_TIMEOUT)


def invalid(code: str, message: str, field: str | None = None) -> SmError:
    """A request the Veteran can fix (422): ``message`` says how."""
    return SmError(code, 422, message, field=field)


def check_characters(text: str, field: str) -> None:
    """Refuse text a Veteran wrote that holds a character a message must not hold, naming the field
    and the character's code point (never the text): the Veteran can see and fix what they wrote."""
    character = unsafe_character(text)
    if character is not None:
        raise invalid(
            "invalid_character",
            f"Remove the character {code_point(character)} from the {field}: messages can't "
            "hold control characters (other than new lines and tabs) or characters that change "
            "the direction of text.",
            field,
        )


def check_subject(subject: str) -> None:
    if not subject.strip():
        raise invalid("subject_required", "Enter a subject.", "subject")
    if len(subject) > SUBJECT_MAX_LENGTH:
        raise invalid(
            "subject_too_long",
            f"Shorten the subject to {SUBJECT_MAX_LENGTH} characters or fewer.",
            "subject",
        )
    check_characters(subject, "subject")


def check_body(body: str) -> None:
    if not body.strip():
        raise invalid("body_required", "Enter a message.", "body")
    if len(body) > BODY_MAX_LENGTH:
        raise invalid(
            "body_too_long",
            f"Shorten the message to {BODY_MAX_LENGTH:,} characters or fewer.",
            "body",
        )
    check_characters(body, "body")


MIGRATION_BLOCKING_PHASES = frozenset({"p3", "p4", "p5", "p6"})
"""Oracle Health migration phases (6 days before to 2 days after cut-over) that block a facility."""


def migration_blocks(phase: str) -> bool:
    return phase in MIGRATION_BLOCKING_PHASES


@dataclass(frozen=True)
class Recipients:
    """The care teams SM lets a Veteran message, and the ids of those they are blocked from."""

    allowed: tuple[CareTeam, ...] = ()
    blocked: frozenset[int] = frozenset()


def choose_recipient(
    team_id: int, offered: Sequence[CareTeam], blocked: Collection[int]
) -> CareTeam:
    """The offered team ``team_id``; SM151 when the Veteran is blocked from it, SM119 when it is not
    one of the offered teams (unknown, not associated, or not offered for this message)."""
    if team_id in blocked:
        raise sm_error("SM151")
    for team in offered:
        if team.triageTeamId == team_id:
            return team
    raise sm_error("SM119")


class DraftState(StrEnum):
    """A draft is open until sent or deleted; then it is gone for the Veteran (as in SM)."""

    OPEN = "open"
    SENT = "sent"
    DELETED = "deleted"


Changed = Literal["recipient_id", "subject", "body", "category"]


@dataclass(frozen=True)
class DraftContent:
    """What a draft holds: a renewal draft's category is locked to MEDICATIONS."""

    renewal: bool
    category: Category
    subject: str
    body: str
    recipient_id: int | None = None
    station_number: str | None = None
    ehr: Ehr | None = None
    team_selection: TeamSelection | None = None
    platform: Platform | None = None


@dataclass(frozen=True)
class DraftEdit:
    """A Veteran's change to a draft; what is None stays as it is."""

    recipient_id: int | None = None
    team_selection: TeamSelection | None = None
    category: Category | None = None
    subject: str | None = None
    body: str | None = None
    platform: Platform | None = None


def addressed(draft: DraftContent, team: CareTeam, how: TeamSelection) -> DraftContent:
    return replace(
        draft,
        recipient_id=team.triageTeamId,
        station_number=team.stationNumber,
        ehr=team.ehr,
        team_selection=how,
    )


def new_message(
    category: Category,
    subject: str,
    body: str,
    team: CareTeam,
    how: TeamSelection,
    platform: Platform | None,
) -> DraftContent:
    """A general new message to a team the Veteran picked (any category)."""
    check_subject(subject)
    check_body(body)
    draft = DraftContent(
        renewal=False, category=category, subject=subject, body=body, platform=platform
    )
    return addressed(draft, team, how)


def revise(
    draft: DraftContent, edit: DraftEdit, offered: Sequence[CareTeam], blocked: Collection[int]
) -> tuple[DraftContent, list[Changed]]:
    """The draft after ``edit``, and which of its fields changed; raises what the Veteran must fix."""
    changed: list[Changed] = []
    if edit.category is not None and edit.category != draft.category:
        if draft.renewal:
            raise invalid(
                "category_locked", "A renewal request's category stays MEDICATIONS; leave it out."
            )
        draft = replace(draft, category=edit.category)
        changed.append("category")
    if edit.subject is not None:
        check_subject(edit.subject)
        if edit.subject != draft.subject:
            draft = replace(draft, subject=edit.subject)
            changed.append("subject")
    if edit.body is not None:
        check_body(edit.body)
        if edit.body != draft.body:
            draft = replace(draft, body=edit.body)
            changed.append("body")
    if edit.recipient_id is not None:
        if edit.team_selection is None:
            raise invalid(
                "team_selection_required",
                "Say how the care team was chosen: team_selection is suggested, recent or "
                "care_system_picker.",
            )
        team = choose_recipient(edit.recipient_id, offered, blocked)
        if team.triageTeamId != draft.recipient_id:
            changed.append("recipient_id")
        draft = addressed(draft, team, edit.team_selection)
    if edit.platform is not None:
        draft = replace(draft, platform=edit.platform)
    return draft, changed


def check_sendable(draft: DraftContent) -> None:
    """A draft goes out only with a care team, a subject and a message."""
    if draft.recipient_id is None or draft.station_number is None:
        raise invalid("recipient_required", "Choose a care team before sending.")
    check_subject(draft.subject)
    check_body(draft.body)


class DeliveryStatus(StrEnum):
    """An upstream message's status. An Oracle Health send is accepted, then polled until SM gives it
    a final status; PENDING is rxsm's word for every status that is not final (SM's ``IN_PROGRESS``,
    or none)."""

    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    INVALID = "INVALID"
    UNKNOWN = "UNKNOWN"
    NOT_SUPPORTED = "NOT_SUPPORTED"


FINAL_STATUSES = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.INVALID,
        DeliveryStatus.UNKNOWN,
        DeliveryStatus.NOT_SUPPORTED,
    }
)
"""The statuses that end the polling (vets-api ``lib/sm/client/message_status.rb``,
``poll_message_status``: ``terminal_statuses``)."""


def delivery_status(word: object) -> DeliveryStatus:
    """SM's status word read as vets-api reads it (upper-cased): a final status, or PENDING for any
    other word, or none (polled again, not an error)."""
    text = str(word).upper() if word is not None else ""
    try:
        return DeliveryStatus(text)
    except ValueError:
        return DeliveryStatus.PENDING


class SendState(StrEnum):
    """Where one draft's send stands.

    SUBMITTING: handed to SM (or about to be) under the attempt's idempotency key, outcome unknown;
    ACCEPTED: Oracle Health accepted it and its status is being polled; SENT; FAILED: SM refused or
    failed it for good, so sending again is a new attempt (a new key).
    """

    SUBMITTING = "submitting"
    ACCEPTED = "accepted"
    SENT = "sent"
    FAILED = "failed"


def check_editable(send: SendState | None) -> None:
    """A draft whose send is under way (or its outcome still unknown) can't change: sending again
    settles it, and a failed send leaves the draft editable again."""
    if send in (SendState.SUBMITTING, SendState.ACCEPTED):
        raise SmError(
            "send_pending",
            409,
            "This message is being sent. Send it again to see how it went before changing it.",
        )


def delivery_failure(status: DeliveryStatus) -> SmError | None:
    """FAILED or INVALID is SM98 (vets-api ``message_status.rb``, ``poll_status``); every other final
    status, UNKNOWN and NOT_SUPPORTED included, is the message sent, and PENDING is no outcome yet."""
    if status in (DeliveryStatus.FAILED, DeliveryStatus.INVALID):
        return sm_error("SM98")
    return None


def state_after(error: SmError, state: SendState) -> SendState:
    """A retryable error leaves the send where it was (sending again resumes it, same key);
    any other error ends the attempt."""
    return state if error.retryable else SendState.FAILED


@dataclass(frozen=True)
class PollSchedule:
    """How an accepted Oracle Health message's status is polled (vets-api ``message_status.rb``,
    ``poll_message_status`` as ``poll_status`` calls it): at once, then every ``interval`` seconds,
    until ``timeout`` seconds have passed; more than ``max_errors`` failed polls in a row end it."""

    interval: float = 1.0
    timeout: float = 60.0
    max_errors: int = 2


@dataclass(frozen=True)
class Polling:
    """One run of the polling: when it runs out of time, and how many polls failed in a row."""

    deadline: float
    errors_in_a_row: int = 0

    @classmethod
    def start(cls, schedule: PollSchedule, now: float) -> "Polling":
        return cls(deadline=now + schedule.timeout)

    def check_time(self, now: float) -> None:
        """Before each poll: out of time is rxsm's ``oh_send_timeout`` (vets-api raises a gateway
        timeout)."""
        if now >= self.deadline:
            raise oh_send_timeout()

    def after_status(self) -> "Polling":
        """A poll that answered a status that is not final: the errors in a row start again."""
        return replace(self, errors_in_a_row=0)

    def after_error(self, error: SmError, schedule: PollSchedule) -> "Polling":
        """A poll that failed is tolerated up to ``max_errors`` in a row; the next one ends the
        polling with that error."""
        errors = self.errors_in_a_row + 1
        if errors > schedule.max_errors:
            raise error
        return replace(self, errors_in_a_row=errors)


def renewal_send(prescription_id: str | None) -> bool:
    """Whether a message goes to SM's renewal endpoint: it names a prescription (vets-api
    ``lib/sm/client/message_sending.rb``, ``renewal_message?``: ``prescription_id.present?``, so a
    blank id is a plain message)."""
    return bool(prescription_id and prescription_id.strip())


def idempotency_key(draft_id: str, attempt: int) -> str:
    """The key SM deduplicates one send attempt of one draft by."""
    return f"{draft_id}.{attempt}"
