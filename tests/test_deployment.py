"""docker-compose.yml can't run here, so check that it agrees with what the code reads."""

import base64
import tomllib
from pathlib import Path
from typing import Any

import yaml

from deploy.image import instructions
from localkafka import KAFKA_VERSION, LocalKafka, free_port
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


def dockerfile_instructions() -> list[tuple[str, str]]:
    return list(instructions((ROOT / "Dockerfile").read_text()))


def test_compose_runs_each_service_command_as_written_in_the_image() -> None:
    """No ENTRYPOINT would prefix compose's ``rxsm serve <name>``; ``rxsm`` is the project's console
    script, in the image's virtual environment at the head of its PATH."""
    instructions = dockerfile_instructions()
    assert not [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rxsm"] == "rxsm.cli:main"
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert 'PATH="/app/.venv/bin:$PATH"' in env
    assert ("WORKDIR", "/app") in instructions
    for name in SERVICES:
        assert COMPOSE["services"][name]["command"][0] == "rxsm"


def test_every_service_is_healthy_only_when_ready() -> None:
    """The healthcheck asks GET /ready on the port the service listens on, with the image's Python
    (python:3.11-slim has no curl); tests/test_image.py runs it against each service started from the
    image."""
    for name in SERVICES:
        check = COMPOSE["services"][name]["healthcheck"]
        test = check["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        assert "/ready" in test[3] and f"os.environ['{PORT_ENV}']" in test[3], name
        assert PORT_ENV in COMPOSE["services"][name]["environment"], name
        assert {"interval", "timeout", "retries", "start_period"} <= check.keys(), name


def test_services_start_once_kafka_is_healthy() -> None:
    for name in SERVICES:
        depends = COMPOSE["services"][name]["depends_on"]
        assert depends["kafka"] == {"condition": "service_healthy"}, name
    assert "kafka-broker-api-versions" in " ".join(
        COMPOSE["services"]["kafka"]["healthcheck"]["test"]
    )


def test_every_service_healthy_condition_names_a_service_with_a_healthcheck() -> None:
    """Compose refuses ``condition: service_healthy`` on a service without a healthcheck."""
    for name, spec in COMPOSE["services"].items():
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            continue
        for target, condition in depends.items():
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in COMPOSE["services"][target], f"{name} -> {target}"


def test_services_get_the_time_to_drain_on_stop() -> None:
    """SIGTERM drains the consumers and the outbox; compose's default 10 s could cut that short."""
    for name in SERVICES:
        grace = COMPOSE["services"][name]["stop_grace_period"]
        assert int(grace.rstrip("s")) >= 30, name


def test_no_broker_makes_a_topic_on_first_use(tmp_path: Path) -> None:
    """rxsm creates its topics with their settings (plumbing/topics.py); a broker that made one on
    first use would give it the broker's defaults (retention, replicas) instead."""
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    local = LocalKafka(port=free_port(), data_dir=tmp_path)
    local._write_properties()
    assert "auto.create.topics.enable=false" in local.properties_file.read_text().splitlines()
