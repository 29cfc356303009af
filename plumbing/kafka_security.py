"""Kafka client security from settings: TLS (with client certificates for mTLS) and SASL/SCRAM.

    RXSM_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    RXSM_KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default) | SCRAM-SHA-256 | PLAIN
    RXSM_KAFKA_SASL_USERNAME / RXSM_KAFKA_SASL_PASSWORD
    RXSM_KAFKA_SSL_CAFILE          the CA that signed the brokers' certificates
    RXSM_KAFKA_SSL_CERTFILE / RXSM_KAFKA_SSL_KEYFILE   this client's certificate and key (mTLS)

The same settings serve the services' FastStream brokers and the raw aiokafka clients (admin, CLI).
"""

import ssl
from typing import Any, Literal

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import BaseModel, SecretStr, model_validator

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaSecurity(BaseModel):
    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> "KafkaSecurity":
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError("SASL needs RXSM_KAFKA_SASL_USERNAME and RXSM_KAFKA_SASL_PASSWORD")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("mTLS needs both RXSM_KAFKA_SSL_CERTFILE and RXSM_KAFKA_SSL_KEYFILE")
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile and self.ssl_keyfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def for_faststream(self) -> BaseSecurity | None:
        """The ``security=`` argument of a FastStream ``KafkaBroker``."""
        context = self.ssl_context()
        if not self.uses_sasl:
            return BaseSecurity(ssl_context=context) if context else None
        assert self.sasl_username and self.sasl_password
        kind = {
            "SCRAM-SHA-512": SASLScram512,
            "SCRAM-SHA-256": SASLScram256,
            "PLAIN": SASLPlaintext,
        }
        return kind[self.sasl_mechanism](
            self.sasl_username, self.sasl_password.get_secret_value(), ssl_context=context
        )

    def for_aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl and self.sasl_username and self.sasl_password:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        return options
