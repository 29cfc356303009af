"""Per-Veteran flags: allow-list, sticky percentages, the kill switch, and live changes."""

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plumbing.flags import (
    DEFAULT_FILE,
    OH_PILOT,
    RENEWAL_FLOW,
    RENEWAL_FLOW_ORACLE_HEALTH,
    RENEWAL_FLOW_VISTA,
    FeatureFlags,
    FlagFile,
    Rollout,
)

VETERANS = [f"10{n:08d}V{n:06d}" for n in range(2000)]


@pytest.fixture
def flag_file(tmp_path: Path) -> FlagFile:
    path = tmp_path / "flags.json"
    shutil.copy(DEFAULT_FILE, path)
    return FlagFile(path)


@pytest.fixture
def flags(flag_file: FlagFile) -> Iterator[FeatureFlags]:
    evaluator = FeatureFlags(flag_file.path, poll_ms=100)
    yield evaluator
    evaluator.close()


def until(condition: Callable[[], bool], within: float = 5) -> None:
    """Wait until a file change is picked up (the provider polls the file)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the flag change was never picked up"
        time.sleep(0.05)


def in_cohort(flags: FeatureFlags) -> set[str]:
    return {veteran for veteran in VETERANS if flags.is_on(OH_PILOT, veteran)}


def test_the_shipped_file_has_every_flag_in_the_expected_shape() -> None:
    rollouts = FlagFile(DEFAULT_FILE).read()
    assert set(rollouts) == {RENEWAL_FLOW, OH_PILOT, RENEWAL_FLOW_VISTA, RENEWAL_FLOW_ORACLE_HEALTH}
    for name, rollout in rollouts.items():
        assert Rollout.from_flagd(rollout.to_flagd()) == rollout, name


def test_an_allow_listed_veteran_is_in_at_zero_percent(
    flag_file: FlagFile, flags: FeatureFlags
) -> None:
    flag_file.change(OH_PILOT, by="test", percentage=0, allow=(VETERANS[7],))
    until(lambda: not flags.is_on(OH_PILOT, VETERANS[8]))
    assert in_cohort(flags) == {VETERANS[7]}


def test_percentages_are_sticky_as_the_rollout_grows(
    flag_file: FlagFile, flags: FeatureFlags
) -> None:
    flag_file.change(OH_PILOT, by="test", percentage=5, allow=())
    until(lambda: len(in_cohort(flags)) < len(VETERANS) // 2)
    at_5 = in_cohort(flags)

    flag_file.change(OH_PILOT, by="test", percentage=25)
    until(lambda: len(in_cohort(flags)) > len(at_5))
    at_25 = in_cohort(flags)

    assert 0.03 < len(at_5) / len(VETERANS) < 0.07
    assert 0.21 < len(at_25) / len(VETERANS) < 0.29
    assert at_5 < at_25, "everyone in at 5% stays in at 25%"


def test_the_kill_switch_wins_over_allow_list_and_percentage(
    flag_file: FlagFile, flags: FeatureFlags
) -> None:
    flag_file.change(RENEWAL_FLOW, by="test", percentage=100, allow=(VETERANS[1],), killed=True)
    until(lambda: not flags.is_on(RENEWAL_FLOW, VETERANS[1]))
    assert not any(flags.is_on(RENEWAL_FLOW, veteran) for veteran in VETERANS[:200])

    flag_file.change(RENEWAL_FLOW, by="test", killed=False)
    until(lambda: flags.is_on(RENEWAL_FLOW, VETERANS[1]))
    assert all(flags.is_on(RENEWAL_FLOW, veteran) for veteran in VETERANS[:200])


def test_a_change_records_who_made_it(flag_file: FlagFile) -> None:
    before, after = flag_file.change(OH_PILOT, by="sre@va.gov", percentage=50)
    assert after.percentage == 50 and after.updated_by == "sre@va.gov"
    assert before.allow == after.allow
    stored = json.loads(flag_file.path.read_text())["flags"][OH_PILOT]
    assert stored["metadata"]["updatedBy"] == "sre@va.gov"


def test_an_unknown_flag_or_percentage_is_refused(flag_file: FlagFile) -> None:
    with pytest.raises(KeyError, match="unknown flag"):
        flag_file.change("mhv_typo", by="test", percentage=5)
    with pytest.raises(ValueError, match="between 0 and 100"):
        flag_file.change(OH_PILOT, by="test", percentage=120)


def test_the_per_ehr_renewal_flags_ship_open_and_close_like_any_flag(
    flag_file: FlagFile, flags: FeatureFlags
) -> None:
    ehr_flags = (RENEWAL_FLOW_VISTA, RENEWAL_FLOW_ORACLE_HEALTH)
    assert all(flags.is_on(flag, VETERANS[0]) for flag in ehr_flags)
    flag_file.change(RENEWAL_FLOW_VISTA, by="test", killed=True)
    until(lambda: not flags.is_on(RENEWAL_FLOW_VISTA, VETERANS[0]))
    assert flags.is_on(RENEWAL_FLOW_ORACLE_HEALTH, VETERANS[0])


def test_a_file_without_the_per_ehr_flags_leaves_both_ehrs_open(tmp_path: Path) -> None:
    """An older flag file (no per-EHR flags) closes nothing; other unlisted flags stay off."""
    document = json.loads(DEFAULT_FILE.read_text())
    for flag in (RENEWAL_FLOW_VISTA, RENEWAL_FLOW_ORACLE_HEALTH, OH_PILOT):
        del document["flags"][flag]
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(document))
    flags = FeatureFlags(path, poll_ms=100)
    try:
        assert flags.is_on(RENEWAL_FLOW_VISTA, VETERANS[0])
        assert flags.is_on(RENEWAL_FLOW_ORACLE_HEALTH, VETERANS[0])
        assert not flags.is_on(OH_PILOT, VETERANS[0])
    finally:
        flags.close()
