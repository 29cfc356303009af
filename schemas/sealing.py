"""Sealed fields: what identifies a Veteran or describes their prescription travels on Kafka encrypted.

Kafka keeps records for days and every consumer of a topic reads them, so an event's PHI (the Veteran's
id, the prescription) is sealed with AES-256-GCM under a key the services are given: on the wire the
event carries ``sealed`` (key id, nonce, ciphertext) in place of those fields, and the rest of the
envelope (ids, type, tool, times, station numbers) stays readable for routing, tracing and SRE tools.
The ciphertext is bound to its event (its type and id are the associated data), so it cannot be moved
to another record.

Keys come from ``RXSM_EVENT_KEYS``: ``kid:base64key[,kid:base64key...]``, the first sealing new
events, every one opening them (so keys rotate without a stop). Without it, a fixed development key
is used, which is only for local runs and tests: outside development mode (``RXSM_ENV``) a service
refuses to start with it, even as an older key (plumbing/settings.py).
"""

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

KEYS_ENV = "RXSM_EVENT_KEYS"
DEVELOPMENT_KEY = b"rxsm development event key only!"
DEVELOPMENT_KEYS = "dev:" + base64.b64encode(DEVELOPMENT_KEY).decode()
"""The key of local runs and tests when ``RXSM_EVENT_KEYS`` is not set; never for real PHI: a
service refuses to start with it outside development mode (``RXSM_ENV``, plumbing/settings.py)."""
ALGORITHM = "A256GCM"
NONCE_BYTES = 12


class Sealed(BaseModel):
    """Encrypted fields of one record (AES-256-GCM)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alg: str = Field(default=ALGORITHM, description="A256GCM: AES-256 in Galois/Counter Mode.")
    kid: str = Field(description="The id of the key that sealed it.")
    nonce: str = Field(description="The 96-bit nonce, base64.")
    ciphertext: str = Field(
        description="The sealed fields as JSON, encrypted, with the tag; base64."
    )


class SealError(ValueError):
    """A sealed value that cannot be opened: an unknown key, or altered or misplaced ciphertext."""


@dataclass(frozen=True)
class Keyring:
    """The keys the services are given: ``current`` seals, every one opens."""

    keys: dict[str, AESGCM]
    current: str
    development: bool = False
    """Whether the public development key is one of them (it could forge any sealed field)."""

    @classmethod
    def parse(cls, text: str) -> "Keyring":
        """``kid:base64key[,kid:base64key...]``; each key 32 bytes. ValueError says what is wrong."""
        keys: dict[str, AESGCM] = {}
        development = False
        for entry in (part.strip() for part in text.split(",") if part.strip()):
            kid, _, encoded = entry.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise ValueError(f"{KEYS_ENV}: key {kid!r} is not base64") from None
            if not kid or len(key) != 32:
                raise ValueError(f"{KEYS_ENV}: key {kid!r} must be 32 bytes (base64), after 'kid:'")
            keys[kid] = AESGCM(key)
            development = development or key == DEVELOPMENT_KEY
        if not keys:
            raise ValueError(f"{KEYS_ENV} names no key")
        return cls(keys, current=next(iter(keys)), development=development)

    def seal(self, clear: bytes, bound_to: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self.keys[self.current].encrypt(nonce, clear, bound_to)
        return Sealed(kid=self.current, nonce=_b64(nonce), ciphertext=_b64(ciphertext))

    def open(self, sealed: Sealed, bound_to: bytes) -> bytes:
        key = self.keys.get(sealed.kid)
        if key is None or sealed.alg != ALGORITHM:
            raise SealError(
                f"sealed with key {sealed.kid!r} ({sealed.alg}), which this service lacks"
            )
        try:
            return key.decrypt(
                base64.b64decode(sealed.nonce), base64.b64decode(sealed.ciphertext), bound_to
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError("sealed fields do not open: altered, or not this record's") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_keyring: Keyring | None = None


def keyring() -> Keyring:
    """The process's keyring: ``RXSM_EVENT_KEYS``, else the development key (read once)."""
    global _keyring
    if _keyring is None:
        _keyring = Keyring.parse(os.environ.get(KEYS_ENV) or DEVELOPMENT_KEYS)
    return _keyring


def use_keyring(ring: Keyring | None) -> None:
    """Set the process's keyring (None: read ``RXSM_EVENT_KEYS`` again on next use)."""
    global _keyring
    _keyring = ring


class SealsPhi(BaseModel):
    """A record whose PHI fields (``SEALED``) are plain in Python and sealed in JSON: on Kafka they
    travel as one ``sealed`` value, bound to the record (``bound_to``), and are opened on reading."""

    SEALED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def bound_to(cls, record: Mapping[str, Any]) -> bytes:
        """The seal's associated data: the record's type and id, so it opens on this record only."""
        return f"{record.get('event_type')}:{record.get('event_id')}".encode()

    @classmethod
    def opened(cls, record: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON ``record`` with its ``sealed`` value opened into the PHI fields (unvalidated);
        a record with nothing sealed as it is. SealError when it does not open."""
        rest = {key: value for key, value in record.items() if key != "sealed"}
        if "sealed" not in record:
            return rest
        clear = keyring().open(Sealed.model_validate(record["sealed"]), cls.bound_to(rest))
        return {**rest, **json.loads(clear)}

    @model_validator(mode="before")
    @classmethod
    def _open_sealed(cls, data: Any) -> Any:
        return cls.opened(data) if isinstance(data, dict) and "sealed" in data else data

    @model_serializer(mode="wrap")
    def _seal(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo):  # type: ignore[no-untyped-def]
        """Not annotated: pydantic then keeps the fields' JSON schema (rewritten for the wire by
        ``__get_pydantic_json_schema__``)."""
        data = handler(self)
        if not info.mode_is_json() or not isinstance(data, dict):
            return data
        clear = {name: _compact(data.pop(name)) for name in self.SEALED if name in data}
        if clear:
            sealed = keyring().seal(json.dumps(clear).encode(), self.bound_to(data))
            data["sealed"] = sealed.model_dump()
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """On the wire (serialization), the PHI fields are replaced by ``sealed``."""
        schema = handler(core_schema)
        if handler.mode != "serialization" or not cls.SEALED:
            return schema
        wire = handler.resolve_ref_schema(schema)
        if "properties" not in wire or "sealed" in wire["properties"]:
            return schema  # an outer layer (the validator's or serializer's), or done already
        phi = [name for name in cls.SEALED if name in wire["properties"]]
        if not phi:
            return schema  # no PHI field (renewal.closed): nothing is sealed, as ``_seal`` does
        for name in phi:
            wire["properties"].pop(name)
            if name in wire.get("required", []):
                wire["required"].remove(name)
        wire["properties"]["sealed"] = {
            **Sealed.model_json_schema(),
            "description": "The PHI fields (" + ", ".join(phi) + "), encrypted.",
        }
        wire.setdefault("required", []).append("sealed")
        return schema


def _compact(value: Any) -> Any:
    """A record without its empty fields (their default), so the sealed value stays small."""
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if item is not None}
    return value
