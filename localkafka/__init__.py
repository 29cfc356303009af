"""A real single-node Apache Kafka 4.1.1 broker (KRaft) for development and tests, without Docker.

Jars come from Maven Central once (``ensure_jars``); ``LocalKafka`` starts and stops the broker::

    with LocalKafka(port=free_port(), data_dir=tmp_path) as kafka:
        use(kafka.bootstrap_servers)
"""

from localkafka.broker import (
    KAFKA_VERSION,
    LocalKafka,
    LocalKafkaError,
    cache_dir,
    ensure_jars,
    free_port,
    port_answers,
)

__all__ = [
    "KAFKA_VERSION",
    "LocalKafka",
    "LocalKafkaError",
    "cache_dir",
    "ensure_jars",
    "free_port",
    "port_answers",
]
