"""Tokens signed by an identity provider's keys, published as a JWKS, as well as a shared secret.

A JWKS is served over real HTTP by a small server in this test, with keys made here (RSA and P-256).
A token signed with one of its private keys passes; a token the JWKS does not vouch for is refused
with 401 in the one error shape (``{"code": "unauthorized", "message": ...}``): another key under the
same kid, an unknown kid, another algorithm than the key's, an HS256 token signed with the public key
(algorithm confusion), expired, for another audience or issuer, unsigned. A JWKS that cannot be
reached answers 503 ``auth_unavailable`` for a token whose key was never fetched (the token may be
fine: a 401 would make the caller sign in again for nothing), while keys fetched before keep working.
The fetch runs off the event loop and is cached. The services run in this process without a broker.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from localkafka import free_port
from plumbing.auth import DEVELOPMENT_JWT_KEY, AuthSettings, issue_token
from tests.faults.flow import VISTA_VETERAN, renewal_requests
from tests.faults.inprocess import HttpServices, http_services

ISSUER = "https://idp.example.test/"
VETERAN = VISTA_VETERAN
"""A demo Veteran with care teams: GET /v1/care-teams answers 200 for them."""
CARE_TEAMS = "/v1/care-teams"


@dataclass(frozen=True)
class SigningKey:
    """An identity provider's key pair, as its JWKS publishes the public half."""

    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            fields = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            fields = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**fields, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], alg: str | None = None, kid: str | None = None) -> str:
        return jwt.encode(
            claims, self.private, algorithm=alg or self.alg, headers={"kid": kid or self.kid}
        )


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


RSA = rsa_key("rsa-1")
EC = ec_key("ec-1")
IMPOSTOR = rsa_key(RSA.kid)
"""Another RSA key claiming the published key's kid."""


class JwksServer:
    """The identity provider's JWKS endpoint: real HTTP on a free port, counting its fetches."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                time.sleep(server.delay)
                body = json.dumps({"keys": [key.jwk() for key in server.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer([RSA, EC])
    yield server
    server.close()


@pytest.fixture(scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpServices]:
    async with http_services(tmp_path_factory.mktemp("jwks")) as running:
        yield running


def configure(services: HttpServices, **settings: Any) -> AuthSettings:
    """Every service verifies tokens with these settings (a fresh key cache), outside development
    mode unless ``env`` says otherwise."""
    auth = AuthSettings(**{"env": "production", **settings})
    for app in services.apps.values():
        app.state.auth = auth
    return auth


@pytest.fixture
async def configured(services: HttpServices) -> AsyncIterator[None]:
    """Put the services' own token settings back after a test."""
    before = {name: app.state.auth for name, app in services.apps.items()}
    yield
    for name, app in services.apps.items():
        app.state.auth = before[name]


def claims(
    subject: str = VETERAN,
    audience: str = "rxsm",
    issuer: str | None = ISSUER,
    ttl: timedelta = timedelta(minutes=5),
) -> dict[str, Any]:
    now = datetime.now(UTC)
    issued = {"sub": subject, "aud": audience, "iat": now, "exp": now + ttl}
    return {**issued, "iss": issuer} if issuer else issued


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hs256_signed_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HS256 with the published public key (PEM) as the secret.
    (PyJWT refuses to make such a token, so it is made by hand.)"""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = b64(json.dumps(payload, default=lambda at: int(at.timestamp())).encode())
    signing_input = f"{header}.{body}".encode()
    signature = hmac.new(key.public_pem(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def unsigned(payload: dict[str, Any]) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": RSA.kid}).encode())
    body = b64(json.dumps(payload, default=lambda at: int(at.timestamp())).encode())
    return f"{header}.{body}."


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["code"] == "unauthorized" and body["message"], body
    assert response.headers["WWW-Authenticate"] == "Bearer"


pytestmark = pytest.mark.usefixtures("configured")


@pytest.mark.parametrize("key", [RSA, EC], ids=["RS256", "ES256"])
async def test_a_veterans_token_signed_with_a_published_key_is_accepted(
    services: HttpServices, jwks: JwksServer, key: SigningKey
) -> None:
    configure(services, jwt_jwks_url=jwks.url, jwt_issuer=ISSUER)

    response = await services.careteam.get(CARE_TEAMS, headers=bearer(key.sign(claims())))

    assert response.status_code == 200, response.text
    assert [s["stationNumber"] for s in response.json()["care_systems"]] == ["442"]


REFUSED = {
    "another key under the published kid": lambda: IMPOSTOR.sign(claims()),
    "a kid the JWKS does not have": lambda: RSA.sign(claims(), kid="rsa-unknown"),
    "no kid": lambda: jwt.encode(claims(), RSA.private, algorithm="RS256"),
    "HS256 signed with the public key (algorithm confusion)": lambda: hs256_signed_with_public_key(
        RSA, claims()
    ),
    "an algorithm other than its key's": lambda: RSA.sign(claims(), alg="RS512"),
    "expired": lambda: RSA.sign(claims(ttl=-timedelta(seconds=5))),
    "another audience": lambda: RSA.sign(claims(audience="rxsm-services")),
    "another issuer": lambda: RSA.sign(claims(issuer="https://elsewhere.example.test/")),
    "no issuer": lambda: RSA.sign(claims(issuer=None)),
    "unsigned (alg none)": lambda: unsigned(claims()),
    "signed with the development secret": lambda: issue_token(VETERAN, AuthSettings()),
}


@pytest.mark.parametrize("what", list(REFUSED))
async def test_a_token_the_jwks_does_not_vouch_for_is_refused(
    services: HttpServices, jwks: JwksServer, what: str
) -> None:
    # RS512 is allowed here so that only the key's own algorithm (RS256) can refuse that token.
    configure(
        services, jwt_jwks_url=jwks.url, jwt_issuer=ISSUER, jwks_algorithms=["RS256", "RS512"]
    )

    response = await services.careteam.get(CARE_TEAMS, headers=bearer(REFUSED[what]()))

    assert_unauthorized(response)


async def test_an_expired_token_is_told_to_sign_in_again(
    services: HttpServices, jwks: JwksServer
) -> None:
    configure(services, jwt_jwks_url=jwks.url)

    response = await services.careteam.get(
        CARE_TEAMS, headers=bearer(RSA.sign(claims(ttl=-timedelta(seconds=5))))
    )

    assert_unauthorized(response)
    assert "expired" in response.json()["message"]


@pytest.mark.parametrize("env", ["production", "development"])
async def test_algorithm_confusion_fails_against_the_shared_secret_too(
    services: HttpServices, jwks: JwksServer, env: str
) -> None:
    """With a shared secret on as well (a real one, or the development one in development mode),
    an HS256 token meets only that secret, never the published public key."""
    secret = "a-real-veteran-token-secret-of-32-bytes" if env == "production" else None
    configure(services, env=env, jwt_jwks_url=jwks.url, **({"jwt_key": secret} if secret else {}))

    confused = hs256_signed_with_public_key(RSA, claims())
    response = await services.careteam.get(CARE_TEAMS, headers=bearer(confused))

    assert_unauthorized(response)


async def test_a_configured_shared_secret_verifies_beside_the_jwks(
    services: HttpServices, jwks: JwksServer
) -> None:
    auth = configure(services, jwt_jwks_url=jwks.url, jwt_key="a-real-veteran-token-secret-32b!")

    shared = await services.careteam.get(CARE_TEAMS, headers=bearer(issue_token(VETERAN, auth)))
    published = await services.careteam.get(CARE_TEAMS, headers=bearer(RSA.sign(claims())))

    assert (shared.status_code, published.status_code) == (200, 200), (shared.text, published.text)


async def test_the_development_secret_verifies_only_in_development_mode(
    services: HttpServices, jwks: JwksServer
) -> None:
    token = issue_token(VETERAN, AuthSettings(jwt_key=DEVELOPMENT_JWT_KEY))

    configure(services, jwt_jwks_url=jwks.url)
    production = await services.careteam.get(CARE_TEAMS, headers=bearer(token))
    configure(services, env="development", jwt_jwks_url=jwks.url)
    development = await services.careteam.get(CARE_TEAMS, headers=bearer(token))

    assert_unauthorized(production)
    assert development.status_code == 200, development.text


async def test_the_jwks_is_fetched_once_for_concurrent_and_later_requests(
    services: HttpServices, jwks: JwksServer
) -> None:
    configure(services, jwt_jwks_url=jwks.url)
    token = bearer(RSA.sign(claims()))

    first = await asyncio.gather(
        *(services.careteam.get(CARE_TEAMS, headers=token) for _ in range(10))
    )
    later = [await services.careteam.get(CARE_TEAMS, headers=token) for _ in range(5)]

    assert {r.status_code for r in [*first, *later]} == {200}
    assert jwks.fetches == 1


async def test_an_unknown_kid_refetches_at_most_once_per_cooldown(
    services: HttpServices, jwks: JwksServer
) -> None:
    configure(services, jwt_jwks_url=jwks.url, jwks_cooldown_seconds=60)
    await services.careteam.get(CARE_TEAMS, headers=bearer(RSA.sign(claims())))

    unknown = [
        await services.careteam.get(CARE_TEAMS, headers=bearer(RSA.sign(claims(), kid=f"k{n}")))
        for n in range(5)
    ]

    for response in unknown:
        assert_unauthorized(response)
    assert jwks.fetches == 1


async def test_a_rotated_in_key_is_fetched_when_a_token_first_names_it(
    services: HttpServices, jwks: JwksServer
) -> None:
    configure(services, jwt_jwks_url=jwks.url, jwks_cooldown_seconds=0)
    before = await services.careteam.get(CARE_TEAMS, headers=bearer(RSA.sign(claims())))
    rotated = rsa_key("rsa-2")
    jwks.keys.append(rotated)

    after = await services.careteam.get(CARE_TEAMS, headers=bearer(rotated.sign(claims())))

    assert (before.status_code, after.status_code) == (200, 200), after.text
    assert jwks.fetches == 2


async def test_a_key_withdrawn_from_the_jwks_is_refused_once_the_cache_expires(
    services: HttpServices, jwks: JwksServer
) -> None:
    configure(services, jwt_jwks_url=jwks.url, jwks_cache_seconds=0.2)
    token = bearer(RSA.sign(claims()))
    cached = await services.careteam.get(CARE_TEAMS, headers=token)
    jwks.keys.remove(RSA)
    await asyncio.sleep(0.3)

    withdrawn = await services.careteam.get(CARE_TEAMS, headers=token)

    assert cached.status_code == 200, cached.text
    assert_unauthorized(withdrawn)


async def test_an_unreachable_jwks_answers_503_for_a_key_never_fetched(
    services: HttpServices,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    configure(services, jwt_jwks_url=nowhere, jwks_timeout_seconds=2)

    response = await services.careteam.get(CARE_TEAMS, headers=bearer(RSA.sign(claims())))

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "auth_unavailable"
    assert "JWKS" in response.json()["message"]
    assert int(response.headers["Retry-After"]) > 0


async def test_keys_fetched_before_keep_verifying_while_the_jwks_is_unreachable(
    services: HttpServices,
) -> None:
    jwks = JwksServer([RSA])
    configure(services, jwt_jwks_url=jwks.url, jwks_cache_seconds=0.2)
    token = bearer(RSA.sign(claims()))
    before = await services.careteam.get(CARE_TEAMS, headers=token)
    jwks.close()
    await asyncio.sleep(0.3)

    during = await services.careteam.get(CARE_TEAMS, headers=token)
    never_fetched = await services.careteam.get(CARE_TEAMS, headers=bearer(EC.sign(claims())))

    assert (before.status_code, during.status_code) == (200, 200), during.text
    assert never_fetched.status_code == 503, never_fetched.text


async def test_fetching_the_jwks_does_not_block_the_event_loop(
    services: HttpServices, jwks: JwksServer
) -> None:
    """While a slow JWKS answers (1 s), the event loop keeps turning and other requests are served."""
    configure(services, jwt_jwks_url=jwks.url)
    jwks.delay = 1.0
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    ticker = asyncio.create_task(tick())
    verifying = asyncio.create_task(
        services.careteam.get(CARE_TEAMS, headers=bearer(RSA.sign(claims())))
    )
    await asyncio.sleep(0.2)
    health = await services.careteam.get("/health")
    health_before_verified = not verifying.done()
    verified = await verifying
    ticker.cancel()

    assert health.status_code == 200 and health_before_verified
    assert verified.status_code == 200, verified.text
    assert jwks.fetches == 1
    assert max(gaps) < 0.3, f"the event loop stood still for {max(gaps):.2f} s"


async def test_service_tokens_are_verified_with_the_services_jwks(
    services: HttpServices, jwks: JwksServer
) -> None:
    configure(services, service_jwks_url=jwks.url, service_issuer=ISSUER)
    request = renewal_requests(1)[0]

    def ask(token: str) -> Any:
        headers = {**bearer(token), "Idempotency-Key": request.key}
        return services.renewal.post("/v1/renewals", json=request.body, headers=headers)

    another_service = await ask(RSA.sign(claims("sm-front-end", "rxsm-services")))
    a_veterans = await ask(RSA.sign(claims(VETERAN, "rxsm")))
    medications_app = await ask(RSA.sign(claims("medications-app", "rxsm-services")))

    assert another_service.status_code == 403, another_service.text
    assert_unauthorized(a_veterans)
    assert medications_app.status_code == 202, medications_app.text
