"""Bearer tokens as an attacker (or a misconfigured client) would present them."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from plumbing.auth import AuthSettings, issue_service_token, issue_token

AUTH = AuthSettings()


def _claims(subject: str, audience: str, ttl: timedelta) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"sub": subject, "aud": audience, "iat": now - timedelta(hours=2), "exp": now + ttl}


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        encoded = json.dumps(data, default=lambda at: int(at.timestamp())).encode()
        return base64.urlsafe_b64encode(encoded).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def veteran_credentials(subject: str) -> dict[str, dict[str, str]]:
    """Authorization headers that must not pass as ``subject``'s, by what is wrong with each."""
    good = _claims(subject, AUTH.jwt_audience, timedelta(hours=1))
    expired = _claims(subject, AUTH.jwt_audience, -timedelta(minutes=1))
    without_expiry = {k: v for k, v in good.items() if k != "exp"}
    tokens = {
        "expired": jwt.encode(expired, AUTH.jwt_key, algorithm="HS256"),
        "bad signature": jwt.encode(good, "not-the-key-" + AUTH.jwt_key, algorithm="HS256"),
        "another audience": jwt.encode(
            {**good, "aud": AUTH.service_audience}, AUTH.jwt_key, algorithm="HS256"
        ),
        "unsigned (alg none)": _unsigned(good),
        "without an expiry": jwt.encode(without_expiry, AUTH.jwt_key, algorithm="HS256"),
        "the Medications app's service token": issue_service_token(AUTH),
        "not a JWT": "not-a-jwt",
    }
    return {
        "no token": {},
        "another scheme": {"Authorization": f"Basic {base64.b64encode(b'user:pass').decode()}"},
        **{what: {"Authorization": f"Bearer {token}"} for what, token in tokens.items()},
    }


def service_credentials() -> dict[str, tuple[dict[str, str], int]]:
    """Authorization headers that must not pass as the Medications app's, with the answer due."""
    app = AUTH.medications_app_subject
    good = _claims(app, AUTH.service_audience, timedelta(hours=1))
    expired = _claims(app, AUTH.service_audience, -timedelta(minutes=1))

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return {
        "no token": ({}, 401),
        "expired": (bearer(jwt.encode(expired, AUTH.service_jwt_key, algorithm="HS256")), 401),
        "bad signature": (
            bearer(jwt.encode(good, "not-the-key-" + AUTH.service_jwt_key, algorithm="HS256")),
            401,
        ),
        "unsigned (alg none)": (bearer(_unsigned(good)), 401),
        "a Veteran's token": (bearer(issue_token("1012845331V153043", AUTH)), 401),
        "another service's token": (bearer(issue_service_token(AUTH, "sm-front-end")), 403),
    }
