"""The care-team service's OH pilot is the ``mhv_secure_messaging_cerner_pilot`` flag of the flag file."""

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plumbing.flags import DEFAULT_FILE, OH_PILOT, RENEWAL_FLOW, FeatureFlags, FlagFile
from services.careteam.adapters.flags import FlagsOhPilot

OH_ONLY = "1013062086V794840"
VISTA_ONLY = "1012845331V153043"


@pytest.fixture
def flag_file(tmp_path: Path) -> FlagFile:
    path = tmp_path / "flags.json"
    shutil.copy(DEFAULT_FILE, path)
    flags = FlagFile(path)
    flags.change(OH_PILOT, by="test", percentage=0, allow=(OH_ONLY,))
    return flags


@pytest.fixture
def pilot(flag_file: FlagFile) -> Iterator[FlagsOhPilot]:
    flags = FeatureFlags(flag_file.path, poll_ms=100)
    yield FlagsOhPilot(flags)
    flags.close()


def until(condition: Callable[[], bool], within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the flag change was never picked up"
        time.sleep(0.05)


def test_the_pilot_is_on_for_allow_listed_veterans(pilot: FlagsOhPilot) -> None:
    assert pilot.is_on(OH_ONLY)
    assert not pilot.is_on(VISTA_ONLY)


def test_a_change_to_the_file_applies_without_a_restart(
    flag_file: FlagFile, pilot: FlagsOhPilot
) -> None:
    flag_file.change(OH_PILOT, by="test", allow=())
    until(lambda: not pilot.is_on(OH_ONLY))

    flag_file.change(OH_PILOT, by="test", percentage=100)
    until(lambda: pilot.is_on(VISTA_ONLY))
    assert pilot.is_on(OH_ONLY)

    flag_file.change(OH_PILOT, by="test", killed=True)
    until(lambda: not pilot.is_on(VISTA_ONLY))
    assert not pilot.is_on(OH_ONLY)


def test_only_the_oh_pilot_flag_counts(flag_file: FlagFile, pilot: FlagsOhPilot) -> None:
    flag_file.change(RENEWAL_FLOW, by="test", killed=True)
    flag_file.change(OH_PILOT, by="test", allow=(OH_ONLY, VISTA_ONLY))
    until(lambda: pilot.is_on(VISTA_ONLY))
    assert pilot.is_on(OH_ONLY), "the renewal flow's kill switch is not the pilot's"
