"""Who is calling: Veterans present a bearer JWT whose subject is their id (ICN); services (the
Medications app, SRE tools) a JWT of their own audience.

Each audience's tokens are verified with a shared secret (HS256), with an identity provider's public
keys from a JWKS URL (RS256, ES256, ...), or both. Which key verifies a token follows from its header:
an ``HS*`` token only ever meets the shared secret and an asymmetric one only the JWKS key its ``kid``
names, bound to that key's algorithm, so a token signed "HS256" with a public key (the classic
algorithm confusion) has no key to pass. The built-in development secrets verify nothing outside
development mode (``RXSM_ENV=development``), and a service refuses to start on them
(plumbing/settings.py).

The JWKS is fetched with PyJWT's ``PyJWKClient``, which is blocking (urllib): the fetch runs in a
worker thread, one at a time per key set, bounded by ``jwks_timeout_seconds``, and its keys are cached
on the event loop, so a request whose key is cached verifies without a thread or a lock. An unknown
``kid`` refetches at most once per ``jwks_cooldown_seconds``. When the JWKS cannot be fetched, keys
fetched before keep verifying; a token whose key was never fetched gets 503 ``auth_unavailable`` with
``Retry-After`` (its token may well be valid: a 401 would send the caller to sign in again for nothing).
"""

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import jwt
import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt import PyJWK, PyJWKClient
from pydantic import Field, HttpUrl, PrivateAttr
from pydantic_settings import BaseSettings, SettingsConfigDict

_bearer = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the Veteran's id.")

log = structlog.get_logger("rxsm.auth")

Environment = Literal["development", "production"]
"""``RXSM_ENV``: ``development`` allows the built-in development keys; ``production`` (the default)
needs real ones."""
DEVELOPMENT: Environment = "development"

DEVELOPMENT_JWT_KEY = "rxsm-local-development-key-change-me"
"""Signs and verifies Veterans' tokens in development mode only (local runs, the demo, tests)."""
DEVELOPMENT_SERVICE_KEY = "rxsm-local-service-key-change-me"
"""Signs and verifies service tokens in development mode only."""

SharedAlgorithm = Literal["HS256", "HS384", "HS512"]
PublicKeyAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]

FAILED_FETCH_BACKOFF_SECONDS = 1.0
"""After a failed JWKS fetch, the next one waits this long (an outage costs one fetch a second)."""
RETRY_AFTER_SECONDS = 2


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RXSM_", extra="ignore")

    env: Environment = Field(
        default="production",
        description="``development`` lets the built-in development secrets verify tokens.",
    )
    jwt_key: str = Field(
        default=DEVELOPMENT_JWT_KEY,
        repr=False,
        description="Shared secret (HS256) verifying Veterans' tokens; the default only in "
        "development mode.",
    )
    jwt_algorithm: SharedAlgorithm = "HS256"
    jwt_jwks_url: HttpUrl | None = Field(
        default=None,
        description="JWKS of the identity provider whose keys sign Veterans' tokens.",
    )
    jwt_issuer: str | None = Field(
        default=None, description="When set, JWKS-verified Veterans' tokens must carry this iss."
    )
    jwt_audience: str = "rxsm"
    service_jwt_key: str = Field(
        default=DEVELOPMENT_SERVICE_KEY,
        repr=False,
        description="Shared secret verifying service callers' tokens (the Medications app), "
        "separate from Veterans'; the default only in development mode.",
    )
    service_jwks_url: HttpUrl | None = Field(
        default=None, description="JWKS of the identity provider whose keys sign service tokens."
    )
    service_issuer: str | None = Field(
        default=None, description="When set, JWKS-verified service tokens must carry this iss."
    )
    service_audience: str = "rxsm-services"
    medications_app_subject: str = "medications-app"
    jwks_algorithms: list[PublicKeyAlgorithm] = Field(
        default=["RS256", "ES256"], description="What a JWKS-verified token may be signed with."
    )
    jwks_cache_seconds: float = Field(
        default=300, gt=0, description="How long a fetched JWKS is used before it is fetched again."
    )
    jwks_cooldown_seconds: float = Field(
        default=30, ge=0, description="At most one refetch per this for tokens of an unknown kid."
    )
    jwks_timeout_seconds: float = Field(default=5, gt=0, description="Per JWKS fetch.")

    _key_sets: dict[tuple[str, float, float, float], "KeySet"] = PrivateAttr(default_factory=dict)

    @property
    def development(self) -> bool:
        return self.env == DEVELOPMENT

    def default_secrets(self) -> list[str]:
        """The settings to set because a built-in development secret would be their only key."""
        missing = []
        if self.jwt_jwks_url is None and self.jwt_key == DEVELOPMENT_JWT_KEY:
            missing.append("RXSM_JWT_KEY or RXSM_JWT_JWKS_URL")
        if self.service_jwks_url is None and self.service_jwt_key == DEVELOPMENT_SERVICE_KEY:
            missing.append("RXSM_SERVICE_JWT_KEY or RXSM_SERVICE_JWKS_URL")
        return missing

    def insecure_jwks_urls(self) -> list[str]:
        """The JWKS settings whose URL is plain HTTP to another host (keys an attacker could swap)."""
        return [
            name
            for name, url in (
                ("RXSM_JWT_JWKS_URL", self.jwt_jwks_url),
                ("RXSM_SERVICE_JWKS_URL", self.service_jwks_url),
            )
            if url is not None and url.scheme != "https" and not _loopback(url.host)
        ]

    @property
    def veterans(self) -> "TokenVerifier":
        shared = self.jwt_key if self._shared_allowed(self.jwt_key, DEVELOPMENT_JWT_KEY) else None
        return self._verifier(self.jwt_audience, shared, self.jwt_jwks_url, self.jwt_issuer)

    @property
    def services(self) -> "TokenVerifier":
        allowed = self._shared_allowed(self.service_jwt_key, DEVELOPMENT_SERVICE_KEY)
        shared = self.service_jwt_key if allowed else None
        return self._verifier(
            self.service_audience, shared, self.service_jwks_url, self.service_issuer
        )

    def _shared_allowed(self, key: str, development_key: str) -> bool:
        return bool(key) and (key != development_key or self.development)

    def _verifier(
        self, audience: str, shared: str | None, url: HttpUrl | None, issuer: str | None
    ) -> "TokenVerifier":
        return TokenVerifier(
            audience=audience,
            shared_key=shared,
            shared_algorithm=self.jwt_algorithm,
            key_set=self.key_set(str(url)) if url is not None else None,
            algorithms=tuple(self.jwks_algorithms),
            issuer=issuer,
        )

    def key_set(self, url: str) -> "KeySet":
        """The cached key set of ``url`` (one per URL and cache settings, for this app's life)."""
        config = (
            url,
            self.jwks_cache_seconds,
            self.jwks_cooldown_seconds,
            self.jwks_timeout_seconds,
        )
        if config not in self._key_sets:
            self._key_sets[config] = KeySet(*config)
        return self._key_sets[config]


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def issue_token(
    veteran_id: str, settings: AuthSettings, ttl: timedelta = timedelta(hours=1)
) -> str:
    """A token for ``veteran_id``, for local development, the demo and tests (shared secret)."""
    now = datetime.now(UTC)
    claims = {"sub": veteran_id, "aud": settings.jwt_audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings.jwt_key, algorithm=settings.jwt_algorithm)


def issue_service_token(
    settings: AuthSettings, subject: str | None = None, ttl: timedelta = timedelta(hours=1)
) -> str:
    """A service token, the Medications app's unless ``subject`` names another caller, for local
    development, the demo, SRE tools and tests (shared secret)."""
    now = datetime.now(UTC)
    claims = {
        "sub": subject or settings.medications_app_subject,
        "aud": settings.service_audience,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, settings.service_jwt_key, algorithm=settings.jwt_algorithm)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def _unavailable() -> HTTPException:
    return HTTPException(
        status_code=503,
        detail={
            "code": "auth_unavailable",
            "message": "The token cannot be verified now: the identity provider's keys (JWKS) "
            "are unreachable. Try again shortly.",
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class KeySetUnavailable(Exception):
    """The JWKS could not be fetched (unreachable, an error answer, or no usable signing key)."""


class KeySet:
    """One identity provider's signing keys, fetched from its JWKS URL with ``PyJWKClient`` in a
    worker thread and cached here, on the event loop."""

    def __init__(self, url: str, lifespan: float, cooldown: float, timeout: float) -> None:
        self.url = url
        self.lifespan = lifespan
        self.cooldown = cooldown
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._fetching: asyncio.Task[None] | None = None
        self.fetches = 0
        """How many fetches were started (for metrics and tests)."""

    async def key(self, kid: str) -> PyJWK:
        """The signing key ``kid``. KeySetUnavailable when it is not cached and cannot be fetched;
        LookupError when the JWKS does not have it."""
        known = self._keys.get(kid)
        age = time.monotonic() - self._fetched_at if self._fetched_at is not None else None
        if known is not None and age is not None and age < self.lifespan:
            return known
        if known is None and age is not None and age < min(self.cooldown, self.lifespan):
            raise LookupError(kid)
        try:
            await self._refresh()
        except KeySetUnavailable:
            if known is None:
                raise
            return known  # keys fetched before keep verifying while the JWKS is unreachable
        found = self._keys.get(kid)
        if found is None:
            raise LookupError(kid)
        return found

    async def _refresh(self) -> None:
        """Fetch the JWKS, once for every caller waiting meanwhile."""
        if self._fetching is None or self._fetching.done():
            failed = self._failed_at
            if failed is not None and time.monotonic() - failed < FAILED_FETCH_BACKOFF_SECONDS:
                raise KeySetUnavailable(self.url)
            self._fetching = asyncio.create_task(self._fetch())
            self._fetching.add_done_callback(_retrieved)
        await asyncio.shield(self._fetching)

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            keys = await asyncio.to_thread(self._client.get_signing_keys, True)
        except (jwt.PyJWTError, ValueError, OSError) as error:
            self._failed_at = time.monotonic()
            log.warning("JWKS fetch failed", jwks_url=self.url, error_type=type(error).__name__)
            raise KeySetUnavailable(self.url) from error
        self._keys = {str(key.key_id): key for key in keys}
        self._fetched_at = time.monotonic()
        self._failed_at = None


def _retrieved(task: "asyncio.Task[None]") -> None:
    """Mark a fetch's failure as seen, for when every request that waited on it went away."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class TokenVerifier:
    """Verifies one audience's tokens: with the shared secret for ``HS*`` tokens (when it is on) and
    with the JWKS key named by ``kid`` for asymmetric ones (when a JWKS is set)."""

    audience: str
    shared_key: str | None = field(repr=False)
    shared_algorithm: str
    key_set: KeySet | None
    algorithms: tuple[str, ...]
    issuer: str | None

    async def subject(self, credentials: HTTPAuthorizationCredentials | None) -> str:
        """The verified ``sub``; 401 saying what is wrong, 503 when the JWKS is unreachable."""
        if credentials is None:
            raise _unauthorized("Send an Authorization: Bearer <token> header.")
        token = credentials.credentials
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise _unauthorized("The token is not valid.") from error
        algorithm = header.get("alg")
        key: str | PyJWK
        issuer: str | None = None
        if self.shared_key is not None and algorithm == self.shared_algorithm:
            key = self.shared_key
        elif self.key_set is not None and algorithm in self.algorithms:
            key = await self._public_key(header.get("kid"))
            issuer = self.issuer
        else:
            raise _unauthorized("The token is not signed with an algorithm this service accepts.")
        return self._decode(token, key, str(algorithm), issuer)

    async def _public_key(self, kid: Any) -> PyJWK:
        assert self.key_set is not None
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("The token does not name its signing key (kid).")
        try:
            return await self.key_set.key(kid)
        except LookupError:
            raise _unauthorized(
                "The token is signed with a key this service does not know."
            ) from None
        except KeySetUnavailable:
            raise _unavailable() from None

    def _decode(self, token: str, key: str | PyJWK, algorithm: str, issuer: str | None) -> str:
        required = ["sub", "exp", *(["iss"] if issuer else [])]
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=issuer,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as error:
            raise _unauthorized("The token has expired; sign in again.") from error
        except jwt.InvalidTokenError as error:
            raise _unauthorized("The token is not valid.") from error
        return str(claims["sub"])


def _is_service_token(credentials: HTTPAuthorizationCredentials | None, audience: str) -> bool:
    """Whether the token says it is for ``audience`` (unverified: it only picks the verifier)."""
    if credentials is None:
        return False
    try:
        claims = jwt.decode(credentials.credentials, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return False
    named = claims.get("aud")
    return named == audience or (isinstance(named, list) and audience in named)


async def current_veteran(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The verified Veteran id from the bearer token, or 401 saying what is wrong."""
    settings: AuthSettings = request.app.state.auth
    return await settings.veterans.subject(credentials)


async def medications_app(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The Medications app, proven by its service token (401 without one, 403 for another caller)."""
    settings: AuthSettings = request.app.state.auth
    subject = await settings.services.subject(credentials)
    if subject != settings.medications_app_subject:
        raise HTTPException(status_code=403, detail="Only the Medications app may do this.")
    return subject


@dataclass(frozen=True)
class Caller:
    """A Veteran (``veteran_id`` set) or a service such as the Medications app or SRE tools."""

    veteran_id: str | None


async def veteran_or_service(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """A Veteran's token (answers are scoped to that Veteran) or any service token."""
    settings: AuthSettings = request.app.state.auth
    if _is_service_token(credentials, settings.service_audience):
        await settings.services.subject(credentials)
        return Caller(veteran_id=None)
    return Caller(veteran_id=await settings.veterans.subject(credentials))


VeteranId = Annotated[str, Depends(current_veteran)]
VeteranOrService = Annotated[Caller, Depends(veteran_or_service)]
MedicationsApp = Annotated[str, Depends(medications_app)]
