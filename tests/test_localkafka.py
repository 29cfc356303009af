"""The local Kafka broker starts, answers, stops by pid and restarts on the same data dir; its jars
are downloaded once, saying how far the download has got, and later starts are quiet."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from localkafka import LocalKafka, LocalKafkaError, broker, ensure_jars, free_port, port_answers


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.kafka
def test_start_stop_restart(tmp_path: Path) -> None:
    kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    try:
        kafka.start()
        pid = kafka.pid
        assert pid is not None
        assert kafka.is_running()
        assert kafka.pid_file.read_text().strip() == str(pid)
        assert kafka.bootstrap_servers == f"127.0.0.1:{kafka.port}"
        with socket.create_connection(("127.0.0.1", kafka.port), timeout=5):
            pass

        assert kafka.stop()
        assert not kafka.is_running()
        assert not _pid_exists(pid)
        assert not kafka.pid_file.exists()
        assert not port_answers("127.0.0.1", kafka.port)

        kafka.start()  # a restart on the same data dir: already formatted, same cluster id
        assert kafka.is_running()
        assert kafka.pid != pid
        assert port_answers("127.0.0.1", kafka.port)
        assert (kafka.data_dir / "server.log").read_text().count("Kafka Server started") == 2
    finally:
        kafka.stop()
    assert not kafka.is_running()
    assert not port_answers("127.0.0.1", kafka.port)


@pytest.mark.kafka
def test_start_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        kafka = LocalKafka(port=squatter.getsockname()[1], data_dir=tmp_path / "kafka")
        with pytest.raises(LocalKafkaError, match="already in use"):
            kafka.start()
    assert not kafka.is_running()


SLOW_MAVEN = """\
import sys, time
from pathlib import Path

Path(sys.argv[0]).with_name("runs").open("a").write("run\\n")
out = Path(next(a for a in sys.argv if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
print("[INFO] Downloading from central: https://repo.example/kafka_2.13-4.1.1.pom", flush=True)
print("[INFO] Downloaded from central: https://repo.example/kafka_2.13-4.1.1.pom (2.5 kB at 9 kB/s)")
print("[INFO] Downloaded from central: https://repo.example/kafka_2.13-4.1.1.jar (6.5 MB at 2 MB/s)")
sys.stdout.flush()
time.sleep(1.5)
out.mkdir(parents=True)
(out / "kafka_2.13-4.1.1.jar").write_bytes(b"")
print(f"[INFO] Copying kafka_2.13-4.1.1.jar to {out}/kafka_2.13-4.1.1.jar", flush=True)
"""
"""A Maven that downloads a pom (2.5 kB) and the broker's jar (6.5 MB), takes 1.5 s, then copies it."""


@pytest.fixture
def slow_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``mvn`` on PATH is SLOW_MAVEN, the jar cache is empty, and progress is said every 0.3 s."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(f"#!{sys.executable}\n{SLOW_MAVEN}")
    mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RXSM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(broker, "PROGRESS_EVERY_S", 0.3)
    return bin_dir / "runs"


def test_the_first_download_says_how_far_it_has_got_and_the_next_start_says_nothing(
    slow_maven: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    libs = ensure_jars()

    first = capfd.readouterr()
    assert (libs / "kafka_2.13-4.1.1.jar").is_file()
    assert first.out == "", "progress goes to stderr, never into a command's output"
    progress = [line for line in first.err.splitlines() if "still downloading" in line]
    assert len(progress) >= 2, first.err
    assert progress[-1].endswith("1 jars downloaded (6.5 MB in 2 files) so far")
    assert "1 copied to the cache" in first.err.splitlines()[-1]

    assert ensure_jars() == libs
    second = capfd.readouterr()
    assert (second.out, second.err) == ("", "")
    assert slow_maven.read_text() == "run\n", "Maven ran once"


def test_a_failed_download_names_mavens_last_lines(
    slow_maven: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = slow_maven.with_name("mvn-failing")
    failing.write_text(
        f"#!{sys.executable}\nprint('[ERROR] Could not transfer artifact from central')\n"
        "raise SystemExit(1)\n"
    )
    failing.chmod(0o755)
    failing.rename(slow_maven.with_name("mvn"))

    with pytest.raises(LocalKafkaError, match=r"(?s)mvn exit 1.*Could not transfer artifact"):
        ensure_jars()
    assert not (broker.cache_dir() / "complete").exists(), "a failed download is redone next time"
