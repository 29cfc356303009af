"""An ERROR line is something an SRE must look at: errors aiokafka retries by itself are warnings."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aiokafka import errors

from plumbing.identity import ServiceIdentity
from plumbing.logs import configure_logging
from schemas.vocabulary import Tool


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(ServiceIdentity("logs-test", Tool.SM), stream=stream)
    yield stream
    root.handlers, root.level = handlers, level


def levels(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["level"] for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("logger", "error"),
    [
        ("aiokafka.consumer.fetcher", errors.NotLeaderForPartitionError()),
        ("aiokafka.consumer.group_coordinator", errors.GroupCoordinatorNotAvailableError()),
        ("aiokafka.consumer.fetcher", errors.LeaderNotAvailableError()),
    ],
)
def test_an_error_aiokafka_retries_is_a_warning(
    lines: io.StringIO, logger: str, error: errors.KafkaError
) -> None:
    logging.getLogger(logger).error("Failed fetch offsets from %s: %s", 1, error)
    assert levels(lines) == ["warning"]


def test_an_error_aiokafka_does_not_retry_stays_an_error(lines: io.StringIO) -> None:
    failed = errors.TopicAuthorizationFailedError()
    logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch offsets: %s", failed)
    assert levels(lines) == ["error"]


def test_rxsm_errors_stay_errors_whatever_they_carry(lines: io.StringIO) -> None:
    logging.getLogger("rxsm.renewal").error("gave up: %s", errors.NotLeaderForPartitionError())
    assert levels(lines) == ["error"]
