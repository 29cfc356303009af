"""Settings read from the environment (``RXSM_*``; Kafka and OpenTelemetry by their standard names)."""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from plumbing.flags import DEFAULT_FILE as DEFAULT_FLAGS_FILE
from plumbing.kafka_security import KafkaSecurity, Mechanism, Protocol


class ServiceSettings(BaseSettings):
    """What every service reads; each service extends it with its own fields."""

    model_config = SettingsConfigDict(env_prefix="RXSM_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RXSM_KAFKA_BOOTSTRAP_SERVERS"),
    )
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "RXSM_OTLP_ENDPOINT"),
        description="Export spans over OTLP/HTTP when set (e.g. http://localhost:4318).",
    )
    topic_partitions: int = Field(default=3, ge=1, description="For topics rxsm creates itself.")
    topic_replication: int = Field(
        default=1,
        ge=1,
        description="Replicas of each topic rxsm creates: 1 for a local broker, 3 in production.",
    )
    topic_min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="Replicas that must have a record before acks=all answers; default "
        "min(2, topic_replication), so one broker may fail without losing an acknowledged event.",
    )
    log_level: str = "INFO"
    flags_file: Path = Field(
        default=DEFAULT_FLAGS_FILE, description="The flagd JSON file of per-Veteran feature flags."
    )
    data_dir: str = Field(default=".run", description="Where the embedded SQLite databases live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; SQLite in data_dir when unset."
    )
    retry_attempts: int = Field(default=3, ge=1, description="In-process tries of a failing event.")
    retry_backoff_seconds: float = Field(default=0.2, ge=0)
    redeliveries: int = Field(default=3, ge=0, description="Rounds through the retry topic.")
    redelivery_delay_seconds: float = Field(default=5.0, ge=0)

    kafka_security_protocol: Protocol = "PLAINTEXT"
    kafka_sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    @property
    def kafka_security(self) -> KafkaSecurity:
        """TLS / mTLS / SASL for every Kafka client (see plumbing/kafka_security.py)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
        )

    def database_url_for(self, service: str) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir}/{service}.db"
