"""Sealed fields: what identifies a Veteran or describes their prescription travels on Kafka encrypted.

Kafka keeps records for days and every consumer of a topic reads them, so an event's PHI (the Veteran's
id, the prescription) is sealed with AES-256-GCM under a key the services are given: on the wire the
event carries ``sealed`` (key id, nonce, ciphertext) in place of those fields, and the rest of the
envelope (ids, type, tool, times, station numbers) stays readable for routing, tracing and SRE tools.
The ciphertext is bound to its event (its type and id are the associated data), so it cannot be moved
to another record.

Keys come from ``RXSM_EVENT_KEYS``: ``kid:base64key[,kid:base64key...]``, the first sealing new
events, every one opening them (so keys rotate without a stop). Without it, a fixed development key
is used, which is only for local runs and tests.
"""

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field

KEYS_ENV = "RXSM_EVENT_KEYS"
DEVELOPMENT_KEYS = "dev:" + base64.b64encode(b"rxsm development event key only!").decode()
"""The key of local runs and tests when ``RXSM_EVENT_KEYS`` is not set; never for real PHI."""
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

    @classmethod
    def parse(cls, text: str) -> "Keyring":
        """``kid:base64key[,kid:base64key...]``; each key 32 bytes. ValueError says what is wrong."""
        keys: dict[str, AESGCM] = {}
        for entry in (part.strip() for part in text.split(",") if part.strip()):
            kid, _, encoded = entry.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise ValueError(f"{KEYS_ENV}: key {kid!r} is not base64") from None
            if not kid or len(key) != 32:
                raise ValueError(f"{KEYS_ENV}: key {kid!r} must be 32 bytes (base64), after 'kid:'")
            keys[kid] = AESGCM(key)
        if not keys:
            raise ValueError(f"{KEYS_ENV} names no key")
        return cls(keys, current=next(iter(keys)))

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

    @property
    def development(self) -> bool:
        return self.current == DEVELOPMENT_KEYS.partition(":")[0]


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
