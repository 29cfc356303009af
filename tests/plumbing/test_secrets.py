"""A service refuses to start on a built-in development key unless in development mode.

The development keys are in the source (the Veterans' and the services' JWT shared secrets, the event
key), so anyone could sign a token or seal an event with them. Outside development mode
(``RXSM_ENV=development``: local runs, the demo, tests, docker compose) a service stops at start,
naming each setting to set and never a key's value. A JWKS URL stands in for an audience's shared
secret (the development one then verifies nothing), and the development event key is refused even as
an older key that only opens events.
"""

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from localkafka import free_port
from plumbing.auth import DEVELOPMENT_JWT_KEY, DEVELOPMENT_SERVICE_KEY
from plumbing.settings import DefaultSecrets, ServiceSettings, service_auth
from schemas.sealing import DEVELOPMENT_KEY, DEVELOPMENT_KEYS, Keyring, use_keyring

REAL_EVENT_KEYS = "2026-01:" + base64.b64encode(os.urandom(32)).decode()
REAL_JWT_KEY = "a-veteran-token-secret-from-the-vault"
REAL_SERVICE_KEY = "a-service-token-secret-from-the-vault"
DEVELOPMENT_VALUES = (
    DEVELOPMENT_JWT_KEY,
    DEVELOPMENT_SERVICE_KEY,
    DEVELOPMENT_KEYS.partition(":")[2],
)
"""What must never appear in a refusal."""

AUTH_ENV = (
    "RXSM_JWT_KEY",
    "RXSM_SERVICE_JWT_KEY",
    "RXSM_JWT_JWKS_URL",
    "RXSM_SERVICE_JWKS_URL",
    "RXSM_EVENT_KEYS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No secret from the caller's environment, and the process's event keys put back after."""
    for name in AUTH_ENV:
        monkeypatch.delenv(name, raising=False)
    use_keyring(None)
    yield
    use_keyring(None)


def production() -> ServiceSettings:
    return ServiceSettings(env="production")


def real_secrets(monkeypatch: pytest.MonkeyPatch, *, but: str | None = None) -> None:
    """Real keys for everything, except the setting ``but`` names (left at its default)."""
    real = {
        "RXSM_JWT_KEY": REAL_JWT_KEY,
        "RXSM_SERVICE_JWT_KEY": REAL_SERVICE_KEY,
        "RXSM_EVENT_KEYS": REAL_EVENT_KEYS,
    }
    for name, value in real.items():
        if name != but:
            monkeypatch.setenv(name, value)


def refusal(settings: ServiceSettings) -> str:
    with pytest.raises(DefaultSecrets) as refused:
        service_auth(settings)
    message = str(refused.value)
    for value in DEVELOPMENT_VALUES:
        assert value not in message
    return message


def test_every_development_key_is_refused_outside_development_mode() -> None:
    message = refusal(production())

    for setting in ("RXSM_JWT_KEY", "RXSM_SERVICE_JWT_KEY", "RXSM_EVENT_KEYS", "RXSM_ENV"):
        assert setting in message


@pytest.mark.parametrize(
    ("left", "named"),
    [
        ("RXSM_JWT_KEY", "RXSM_JWT_KEY or RXSM_JWT_JWKS_URL"),
        ("RXSM_SERVICE_JWT_KEY", "RXSM_SERVICE_JWT_KEY or RXSM_SERVICE_JWKS_URL"),
        ("RXSM_EVENT_KEYS", "RXSM_EVENT_KEYS"),
    ],
)
def test_each_development_key_left_is_named(
    monkeypatch: pytest.MonkeyPatch, left: str, named: str
) -> None:
    real_secrets(monkeypatch, but=left)

    message = refusal(production())

    assert named in message
    for other in {"RXSM_JWT_KEY", "RXSM_SERVICE_JWT_KEY", "RXSM_EVENT_KEYS"} - {left}:
        assert other not in message


def test_real_keys_start_and_only_they_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    real_secrets(monkeypatch)

    auth = service_auth(production())

    assert auth.veterans.shared_key == REAL_JWT_KEY
    assert auth.services.shared_key == REAL_SERVICE_KEY


def test_a_jwks_url_stands_in_for_the_shared_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    real_secrets(monkeypatch, but="RXSM_JWT_KEY")
    monkeypatch.setenv("RXSM_JWT_JWKS_URL", "https://idp.example.test/.well-known/jwks.json")

    auth = service_auth(production())

    assert auth.veterans.key_set is not None
    assert auth.veterans.shared_key is None, "the development secret must verify nothing"


def test_a_plain_http_jwks_is_refused_unless_on_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    real_secrets(monkeypatch)
    monkeypatch.setenv("RXSM_SERVICE_JWKS_URL", "http://idp.example.test/.well-known/jwks.json")
    assert "RXSM_SERVICE_JWKS_URL must be https" in refusal(production())

    monkeypatch.setenv("RXSM_SERVICE_JWKS_URL", "http://127.0.0.1:8080/.well-known/jwks.json")
    assert service_auth(production()).services.key_set is not None


def test_the_development_event_key_is_refused_even_as_an_older_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An older key still opens events, and anyone holding the development key could seal one."""
    real_secrets(monkeypatch)
    monkeypatch.setenv("RXSM_EVENT_KEYS", f"{REAL_EVENT_KEYS},old:{DEVELOPMENT_KEYS[4:]}")

    assert "RXSM_EVENT_KEYS" in refusal(production())


def test_the_development_event_key_is_known_by_its_bytes_not_its_id() -> None:
    real_key = REAL_EVENT_KEYS.partition(":")[2]
    development_key = base64.b64encode(DEVELOPMENT_KEY).decode()

    assert Keyring.parse(f"dev:{real_key}").development is False
    assert Keyring.parse(f"2026-01:{development_key}").development is True


def test_development_mode_starts_with_the_development_keys() -> None:
    auth = service_auth(ServiceSettings(env="development"))

    assert auth.veterans.shared_key == DEVELOPMENT_JWT_KEY
    assert auth.services.shared_key == DEVELOPMENT_SERVICE_KEY


def test_development_mode_is_named_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXSM_ENV", "dev")

    with pytest.raises(ValidationError, match="development"):
        ServiceSettings()


@pytest.fixture(scope="module")
def refused_starts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """``rxsm serve <service>`` of each service, in production mode with no secret set: the exit
    code and what it printed (the three start at once, each stopping before it reaches Kafka)."""
    data_dir: Path = tmp_path_factory.mktemp("refused")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RXSM_", "KAFKA_"))}
    started = {
        service: subprocess.Popen(
            [sys.executable, "-m", "rxsm", "serve", service],
            env={
                **inherited,
                "RXSM_ENV": "production",
                "RXSM_DATA_DIR": str(data_dir),
                "RXSM_HTTP_PORT": str(free_port()),
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for service in ("renewal", "careteam", "messaging")
    }
    answers = {}
    for service, process in started.items():
        out, _ = process.communicate(timeout=120)
        answers[service] = (process.returncode, out.decode())
    return answers


@pytest.mark.parametrize("service", ["renewal", "careteam", "messaging"])
def test_rxsm_serve_stops_with_what_to_set(
    refused_starts: dict[str, tuple[int, str]], service: str
) -> None:
    code, printed = refused_starts[service]

    assert code != 0, printed
    said = [line for line in printed.splitlines() if line.startswith(f"rxsm {service}: ")]
    assert len(said) == 1 and said[0].startswith(f"rxsm {service}: refusing to start"), printed
    for setting in ("RXSM_JWT_KEY", "RXSM_SERVICE_JWT_KEY", "RXSM_EVENT_KEYS", "RXSM_ENV"):
        assert setting in said[0]
    for value in DEVELOPMENT_VALUES:
        assert value not in printed
    assert "Traceback" not in printed
