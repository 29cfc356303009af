"""docker-compose.yml can't run here, so check that it agrees with what the code reads."""

import base64
from pathlib import Path
from typing import Any

import yaml

from localkafka import KAFKA_VERSION
from plumbing.settings import ServiceSettings
from rxsm.serve import HOST_ENV, PORT_ENV, SERVICES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def settings_env_names() -> set[str]:
    """Every environment name ServiceSettings reads: RXSM_<field> and the standard aliases."""
    names = {f"RXSM_{name.upper()}" for name in ServiceSettings.model_fields}
    for field in ServiceSettings.model_fields.values():
        choices = getattr(field.validation_alias, "choices", [])
        names.update(str(choice) for choice in choices)
    return names | {PORT_ENV, HOST_ENV}


def test_every_service_runs_in_compose_on_its_own_port() -> None:
    for name, service in SERVICES.items():
        spec = COMPOSE["services"][name]
        assert spec["command"] == ["rxsm", "serve", name]
        assert spec["ports"] == [f"{service.port}:{service.port}"]
        assert spec["environment"][PORT_ENV] == str(service.port)


def test_compose_sets_only_environment_the_code_reads() -> None:
    known = settings_env_names()
    for name in SERVICES:
        assert set(COMPOSE["services"][name]["environment"]) <= known, name


def test_services_reach_kafka_and_jaeger_inside_the_compose_network() -> None:
    kafka = COMPOSE["services"]["kafka"]["environment"]
    docker_listener = next(
        address.split("//")[1]
        for address in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
        if address.startswith("DOCKER://")
    )
    jaeger_ports = {port.split(":")[1] for port in COMPOSE["services"]["jaeger"]["ports"]}
    for name in SERVICES:
        env = COMPOSE["services"][name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == docker_listener
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint.startswith("http://jaeger:") and endpoint.rsplit(":", 1)[1] in jaeger_ports


def test_compose_kafka_matches_the_local_broker() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    cluster_id = kafka["environment"]["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "a base64 UUID, as Kafka wants"
    assert "9092:9092" in kafka["ports"]


def test_the_image_keeps_service_state_in_the_data_volume() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "RXSM_DATA_DIR=/data" in dockerfile
    assert "RXSM_DATA_DIR" in settings_env_names()
    for name in SERVICES:
        assert any(volume.endswith(":/data") for volume in COMPOSE["services"][name]["volumes"])
