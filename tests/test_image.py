"""The Docker image, without a Docker engine: its file set built the way the Dockerfile builds it (COPY
lines, .dockerignore, ``uv sync`` in a clean folder), and each service of docker-compose.yml started from
it to ready (deploy/image.py)."""

import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deploy.image import (
    ImageError,
    Smoke,
    build,
    compose_services,
    ignore_rules,
    is_ignored,
    plan,
    smoke,
)
from plumbing.flags import DEFAULT_FILE as FLAGS_FILE
from rxsm.serve import SERVICES
from services.careteam.adapters.demo import DEMO_DIRECTORY
from services.messaging.settings import DEMO_SM_DATA

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
READ_AT_START = [FLAGS_FILE, DEMO_DIRECTORY, DEMO_SM_DATA]
"""The files the services open at start, found from their own code (``Path(__file__)``)."""
STATEFUL = {"renewal", "messaging", "journey"}
FLAGGED = {"renewal", "careteam", "messaging"}
"""The services that read the feature flags (the journey service reads none)."""


def without(line: str) -> str:
    """The Dockerfile with one line taken out."""
    assert line in DOCKERFILE.splitlines(), line
    return "\n".join(other for other in DOCKERFILE.splitlines() if other != line)


def test_every_file_a_service_reads_at_start_is_in_the_image() -> None:
    copied = plan().copied()
    for path in READ_AT_START:
        relative = path.relative_to(ROOT).as_posix()
        assert relative in copied, f"no COPY line brings {relative}"
        assert copied[relative] == f"/app/{relative}", "where the code looks for it"


def test_the_image_holds_code_and_config_not_tests_or_local_state() -> None:
    copied = plan().copied()
    assert not [p for p in copied if p.startswith(("tests/", ".run/", ".venv/", ".git/"))]
    assert not [p for p in copied if "__pycache__" in p or p.endswith((".pyc", ".db"))]


def test_the_dockerignore_reads_as_docker_reads_it() -> None:
    rules = ignore_rules("**/__pycache__\n**/*.py[cod]\n.run\nconfig/.flags-*\n!keep.db\n*.db\n")
    assert is_ignored("plumbing/__pycache__/http.cpython-311.pyc", rules)
    assert is_ignored("services/renewal/domain.pyc", rules)
    assert is_ignored(".run/renewal.db", rules)
    assert is_ignored("config/.flags-x1.json", rules)
    assert is_ignored("keep.db", rules), "the last matching rule decides"
    assert not is_ignored("config/flags.json", rules)
    assert not is_ignored("services/renewal/domain.py", rules)


def test_a_dockerfile_without_the_config_copy_leaves_the_flag_file_out() -> None:
    """The check is not vacuous: the Dockerfile as it was (no ``COPY config``) misses flags.json."""
    copied = plan(dockerfile=without("COPY config ./config")).copied()
    assert "config/flags.json" not in copied


def test_a_copy_of_a_file_not_in_the_context_fails_the_build(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"COPY missing\.txt"):
        build(tmp_path, dockerfile=DOCKERFILE + "\nCOPY missing.txt ./\n")


def test_the_image_runs_compose_commands_as_they_are_written() -> None:
    """No ENTRYPOINT to prefix compose's ``rxsm serve <name>``; the default command is rxsm's help
    (a service is always named); a non-root numeric user."""
    image = plan()
    assert image.entrypoint == []
    assert image.cmd == ["rxsm", "--help"]
    assert image.workdir == "/app"
    assert image.env["PATH"].split(":")[0] == "/app/.venv/bin"
    assert image.user is not None and image.user.isdigit() and image.user != "0"
    assert sorted(compose_services(COMPOSE)) == sorted(SERVICES)


@pytest.fixture(scope="module")
def smoked(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Smoke]:
    """The image built once, its services started, checked and stopped; its venv removed after."""
    root = tmp_path_factory.mktemp("image")
    yield smoke(root, kafka_bootstrap)
    shutil.rmtree(root / "app" / ".venv", ignore_errors=True)


@pytest.mark.kafka
def test_every_service_starts_from_the_image_to_ready(smoked: Smoke) -> None:
    assert sorted(service.name for service in smoked.services) == sorted(SERVICES)
    for service in smoked.services:
        assert service.ready is not None
        checks = (
            {"kafka": "ok"}
            | ({"flags": "ok"} if service.name in FLAGGED else {})
            | ({"database": "ok"} if service.name in STATEFUL else {})
        )
        assert service.ready == {"status": "ready", "service": service.name, "checks": checks}


@pytest.mark.kafka
def test_each_compose_healthcheck_passes_in_the_image(smoked: Smoke) -> None:
    for service in smoked.services:
        assert service.healthcheck_code == 0, f"{service.name}: {service.tail()}"


@pytest.mark.kafka
def test_services_write_only_to_their_data_volume(smoked: Smoke) -> None:
    """The image's user owns /data alone: nothing new in /app, the databases in each volume."""
    assert smoked.written_to_app == set()
    volumes = smoked.built.root / "volumes"
    for name in STATEFUL:
        assert list(volumes.glob(f"{name}-*/{name}.db")), f"{name}'s database not in its volume"


@pytest.mark.kafka
def test_each_service_stops_on_sigterm_within_its_grace_period(smoked: Smoke) -> None:
    """``docker stop``: SIGTERM, then SIGKILL after the grace period (the smoke fails if it takes
    that). uvicorn shuts the app down (consumers, drain, broker), then dies of the SIGTERM it held."""
    for service in smoked.services:
        assert service.exit_code in (0, -signal.SIGTERM), f"{service.name}: {service.exit_code}"
        assert "Application shutdown complete." in service.tail(), service.name


@pytest.mark.kafka
def test_an_image_without_the_config_copy_starts_no_service(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The check fails as the image failed before config/flags.json was copied."""
    try:
        with pytest.raises(ImageError) as failed:
            smoke(tmp_path, kafka_bootstrap, dockerfile=without("COPY config ./config"))
    finally:
        shutil.rmtree(tmp_path / "app" / ".venv", ignore_errors=True)
    assert re.search(r"exited \(\d+\) while starting", str(failed.value))
    assert "ProviderNotReadyError" in str(failed.value)
