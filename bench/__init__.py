"""``make bench``: throughput, latency and cost of the rxsm flow against the raw Kafka limit."""
