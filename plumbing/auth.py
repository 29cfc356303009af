"""Who is calling: Veterans present a bearer JWT whose subject is their id (ICN)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_bearer = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the Veteran's id.")


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RXSM_", extra="ignore")

    jwt_key: str = Field(
        default="rxsm-local-development-key-change-me",
        description="HS256 key (or RS256 public key) that verifies Veterans' tokens.",
    )
    jwt_algorithm: str = "HS256"
    jwt_audience: str = "rxsm"
    service_jwt_key: str = Field(
        default="rxsm-local-service-key-change-me",
        description="Verifies service callers' tokens (the Medications app), separate from Veterans'.",
    )
    service_audience: str = "rxsm-services"
    medications_app_subject: str = "medications-app"


def issue_token(
    veteran_id: str, settings: AuthSettings, ttl: timedelta = timedelta(hours=1)
) -> str:
    """A token for ``veteran_id``, for local development, the demo and tests (HS256 only)."""
    now = datetime.now(UTC)
    claims = {"sub": veteran_id, "aud": settings.jwt_audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings.jwt_key, algorithm=settings.jwt_algorithm)


def issue_service_token(
    settings: AuthSettings, subject: str | None = None, ttl: timedelta = timedelta(hours=1)
) -> str:
    """A service token, the Medications app's unless ``subject`` names another caller, for local
    development, the demo and tests (HS256 only)."""
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


def _verified_subject(
    credentials: HTTPAuthorizationCredentials | None, key: str, algorithm: str, audience: str
) -> str:
    if credentials is None:
        raise _unauthorized("Send an Authorization: Bearer <token> header.")
    try:
        claims = jwt.decode(
            credentials.credentials,
            key,
            algorithms=[algorithm],
            audience=audience,
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise _unauthorized("The token has expired; sign in again.") from error
    except jwt.InvalidTokenError as error:
        raise _unauthorized("The token is not valid.") from error
    return str(claims["sub"])


async def current_veteran(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The verified Veteran id from the bearer token, or 401 saying what is wrong."""
    settings: AuthSettings = request.app.state.auth
    return _verified_subject(
        credentials, settings.jwt_key, settings.jwt_algorithm, settings.jwt_audience
    )


async def medications_app(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The Medications app, proven by its service token (401 without one, 403 for another caller)."""
    settings: AuthSettings = request.app.state.auth
    subject = _verified_subject(
        credentials, settings.service_jwt_key, settings.jwt_algorithm, settings.service_audience
    )
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
    try:
        _verified_subject(
            credentials, settings.service_jwt_key, settings.jwt_algorithm, settings.service_audience
        )
    except HTTPException:
        veteran = _verified_subject(
            credentials, settings.jwt_key, settings.jwt_algorithm, settings.jwt_audience
        )
        return Caller(veteran_id=veteran)
    return Caller(veteran_id=None)


VeteranId = Annotated[str, Depends(current_veteran)]
VeteranOrService = Annotated[Caller, Depends(veteran_or_service)]
MedicationsApp = Annotated[str, Depends(medications_app)]
