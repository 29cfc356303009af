"""Settings read from the environment (``RXSM_*``; Kafka and OpenTelemetry by their standard names)."""

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    log_level: str = "INFO"
    data_dir: str = Field(default=".run", description="Where the embedded SQLite databases live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; SQLite in data_dir when unset."
    )
    retry_attempts: int = Field(default=3, ge=1, description="In-process tries of a failing event.")
    retry_backoff_seconds: float = Field(default=0.2, ge=0)
    redeliveries: int = Field(default=3, ge=0, description="Rounds through the retry topic.")
    redelivery_delay_seconds: float = Field(default=5.0, ge=0)

    def database_url_for(self, service: str) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir}/{service}.db"
