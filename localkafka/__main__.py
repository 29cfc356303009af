"""CLI: ``python -m localkafka up|down|status [--port 9092] [--data-dir .run/kafka]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from localkafka.broker import KAFKA_VERSION, LocalKafka, LocalKafkaError, port_answers


def _up(kafka: LocalKafka) -> int:
    pid = kafka.pid
    if pid is not None:
        if port_answers(kafka.host, kafka.port):
            print(f"Kafka is already running: bootstrap {kafka.bootstrap_servers}, pid {pid}")
            return 0
        print(
            f"a broker for {kafka.data_dir} is running (pid {pid}) but"
            f" {kafka.bootstrap_servers} does not answer; it may be starting or on"
            " another port: run `down` first",
            file=sys.stderr,
        )
        return 1
    if port_answers(kafka.host, kafka.port):
        print(
            f"port {kafka.bootstrap_servers} is already in use by another process; pick --port",
            file=sys.stderr,
        )
        return 1
    began = time.monotonic()
    kafka.start()
    print(
        f"Kafka {KAFKA_VERSION} is up in {time.monotonic() - began:.1f} s:"
        f" bootstrap {kafka.bootstrap_servers}, pid {kafka.pid}"
    )
    print(f"data and logs: {kafka.data_dir} (server.log)")
    return 0


def _down(kafka: LocalKafka) -> int:
    pid = kafka.pid
    if pid is None or not kafka.stop():
        print(f"no Kafka broker was running for {kafka.data_dir}")
        return 0
    print(f"stopped Kafka (pid {pid})")
    return 0


def _status(kafka: LocalKafka) -> int:
    pid = kafka.pid
    if pid is None:
        print(f"not running (data dir {kafka.data_dir})")
        return 1
    answering = "answering" if port_answers(kafka.host, kafka.port) else "NOT answering"
    print(
        f"running: pid {pid}, bootstrap {kafka.bootstrap_servers} ({answering}),"
        f" data dir {kafka.data_dir}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m localkafka", description=f"A local Apache Kafka {KAFKA_VERSION} broker."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--port", type=int, default=9092, help="client port (default 9092)")
    parser.add_argument(
        "--controller-port", type=int, default=None, help="KRaft controller port (default port+1)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".run/kafka"), help="default .run/kafka"
    )
    args = parser.parse_args(argv)
    kafka = LocalKafka(port=args.port, controller_port=args.controller_port, data_dir=args.data_dir)
    commands = {"up": _up, "down": _down, "status": _status}
    try:
        return commands[args.command](kafka)
    except LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
