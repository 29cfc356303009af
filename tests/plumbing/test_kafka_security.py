"""Kafka client security is configured from settings, for FastStream and for raw aiokafka clients."""

import subprocess
from pathlib import Path

import pytest
from faststream.security import SASLScram256, SASLScram512
from pydantic import ValidationError

from plumbing.kafka_security import KafkaSecurity
from plumbing.settings import ServiceSettings


def test_plaintext_is_the_default_and_needs_no_security_object() -> None:
    security = ServiceSettings().kafka_security
    assert security.for_faststream() is None
    assert security.for_aiokafka() == {"security_protocol": "PLAINTEXT"}


def test_sasl_scram_over_tls_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXSM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RXSM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("RXSM_KAFKA_SASL_USERNAME", "rxsm-careteam")
    monkeypatch.setenv("RXSM_KAFKA_SASL_PASSWORD", "s3cret")
    security = ServiceSettings().kafka_security

    faststream = security.for_faststream()
    assert isinstance(faststream, SASLScram256)
    assert faststream.use_ssl and faststream.username == "rxsm-careteam"
    options = security.for_aiokafka()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(ServiceSettings()), "the password never shows in a repr or log"


def test_sasl_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="SASL needs RXSM_KAFKA_SASL_USERNAME"):
        KafkaSecurity(protocol="SASL_PLAINTEXT")


def test_mtls_loads_the_client_certificate(tmp_path: Path) -> None:
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=rxsm-messaging",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    security = KafkaSecurity(
        protocol="SSL", ssl_cafile=str(cert), ssl_certfile=str(cert), ssl_keyfile=str(key)
    )
    assert security.for_aiokafka()["ssl_context"] is not None
    assert security.for_faststream() is not None
    with pytest.raises(ValidationError, match="mTLS needs both"):
        KafkaSecurity(protocol="SSL", ssl_certfile=str(cert))


def test_scram_512_is_the_default_mechanism() -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    assert isinstance(security.for_faststream(), SASLScram512)
