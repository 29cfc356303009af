"""Settings read from the environment (``RXSM_*``; Kafka and OpenTelemetry by their standard names)."""

from pathlib import Path
from typing import Literal, Self

import structlog
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from plumbing.auth import DEVELOPMENT, AuthSettings, Environment
from plumbing.flags import DEFAULT_FILE as DEFAULT_FLAGS_FILE
from plumbing.kafka_security import KafkaSecurity, Mechanism, Protocol
from schemas import topics as kafka_topics
from schemas.sealing import KEYS_ENV, keyring

REDELIVERY_DAYS = max(*kafka_topics.RETENTION_DAYS.values(), kafka_topics.RETRY_RETENTION_DAYS)
"""How long Kafka may hand a consumer a record again: the longest retention of rxsm's topics."""


class ServiceSettings(BaseSettings):
    """What every service reads; each service extends it with its own fields."""

    model_config = SettingsConfigDict(env_prefix="RXSM_", extra="ignore")

    env: Environment = Field(
        default="production",
        description="``development`` (local runs, the demo, tests, docker compose) lets a service "
        "start with the built-in development keys; otherwise it needs real ones (README, Secrets).",
    )
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
    db_migrate: bool = Field(
        default=True,
        description="Upgrade the database's schema at start; when false, a service refuses to start "
        "on a schema behind its code (run `rxsm db upgrade` first).",
    )
    retention_outbox_days: float = Field(
        default=1.0, gt=0, description="Published outbox rows are deleted after this long."
    )
    retention_inbox_days: float = Field(
        default=REDELIVERY_DAYS + 1,
        ge=REDELIVERY_DAYS,
        description="Processed-event ids are kept at least as long as Kafka can redeliver their "
        "events (REDELIVERY_DAYS), plus a margin (plumbing/retention.py).",
    )
    retention_finished_days: float = Field(
        default=90.0,
        gt=0,
        description="Finished journeys (and outbox rows Kafka refused) are deleted after this long.",
    )
    retention_sweep_seconds: float = Field(
        default=3600.0, gt=0, description="How often retention deletes what is past its age."
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


SamplerName = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
"""The OpenTelemetry samplers ``OTEL_TRACES_SAMPLER`` may name that rxsm runs (another name refuses
to start, rather than trace otherwise than asked)."""


class TracingSettings(BaseSettings):
    """Which traces a service keeps and how its spans leave it (plumbing/telemetry.py).

    A trace is kept or dropped whole: the service where it starts decides from its trace id, and
    every later span, in every service, follows the W3C ``traceparent``'s sampled flag. Spans of a
    trace not kept are still recorded (not exported) so that one ending in error is exported alone.
    """

    model_config = SettingsConfigDict(env_prefix="RXSM_", extra="ignore", populate_by_name=True)

    traces_sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="The share of traces kept (1: all, 0.1: one in ten), decided where a trace starts.",
    )
    traces_sampler: SamplerName | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER", "RXSM_TRACES_SAMPLER"),
        description="OpenTelemetry's sampler, when set, instead of the parent-based ratio; "
        "``always_off`` turns tracing off, error spans included.",
    )
    traces_sampler_arg: float | None = Field(
        default=None,
        ge=0,
        le=1,
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER_ARG", "RXSM_TRACES_SAMPLER_ARG"),
        description="The ratio of ``traceidratio`` and ``parentbased_traceidratio`` "
        "(traces_sample_ratio when unset).",
    )
    traces_keep_errors: bool = Field(
        default=True,
        description="Export a span that ends in error even when its trace is not kept (spans not "
        "kept are then recorded, which costs more than not recording them).",
    )
    span_queue_size: int = Field(
        default=16384,
        ge=1,
        validation_alias=AliasChoices("RXSM_SPAN_QUEUE_SIZE", "OTEL_BSP_MAX_QUEUE_SIZE"),
        description="Spans waiting for export (about 3 KiB each, so 50 MiB when full); beyond it a "
        "span is dropped and counted (``rxsm_spans_dropped_total``).",
    )
    span_export_batch_size: int = Field(
        default=1024,
        ge=1,
        validation_alias=AliasChoices(
            "RXSM_SPAN_EXPORT_BATCH_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
        ),
        description="The most spans one OTLP request carries.",
    )
    span_export_delay_ms: int = Field(
        default=1000,
        gt=0,
        validation_alias=AliasChoices("RXSM_SPAN_EXPORT_DELAY_MS", "OTEL_BSP_SCHEDULE_DELAY"),
        description="The longest a span waits for export while fewer than a batch are queued.",
    )

    @field_validator("traces_sampler", mode="before")
    @classmethod
    def _sampler_name(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @model_validator(mode="after")
    def _batch_fits_the_queue(self) -> Self:
        if self.span_export_batch_size > self.span_queue_size:
            raise ValueError("span_export_batch_size must not exceed span_queue_size")
        return self


log = structlog.get_logger("rxsm.settings")


class DefaultSecrets(RuntimeError):
    """A service would run on a built-in development key outside development mode."""


def service_auth(settings: ServiceSettings) -> AuthSettings:
    """The service's token settings, in the service's mode; DefaultSecrets (naming the settings to
    set, never a value) when a development key would be in use outside development mode."""
    auth = AuthSettings(env=settings.env)
    if settings.env == DEVELOPMENT:
        return auth
    missing = auth.default_secrets()
    if keyring().development:
        missing.append(f"{KEYS_ENV} (kid:base64-of-32-bytes[,kid:...])")
    problems = []
    if missing:
        problems.append(f"it would use the built-in development keys: set {'; '.join(missing)}")
    insecure = auth.insecure_jwks_urls()
    if insecure:
        problems.append(f"{' and '.join(insecure)} must be https (or a loopback address)")
    if problems:
        log.error("refusing to start", missing=missing, insecure=insecure)
        raise DefaultSecrets(
            f"refusing to start: {'; and '.join(problems)}. See the README's Secrets section; "
            "for a local run set RXSM_ENV=development."
        )
    return auth
