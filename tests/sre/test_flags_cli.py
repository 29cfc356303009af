"""`rxsm flags` shows the rollout; `rxsm flags set` changes it and says who did."""

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from plumbing.flags import DEFAULT_FILE, OH_PILOT, FlagFile
from rxsm.cli import app


def test_an_sre_rolls_the_pilot_to_25_percent_and_kills_it(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    shutil.copy(DEFAULT_FILE, path)
    runner = CliRunner()

    changed = runner.invoke(
        app,
        [
            "flags",
            "set",
            OH_PILOT,
            "--file",
            str(path),
            "--percentage",
            "25",
            "--allow",
            "v-1",
            "--by",
            "sre-a",
        ],
    )
    assert changed.exit_code == 0, changed.output
    assert f"{OH_PILOT}: 100% -> 25%, allow-list 0 -> 1, on (by sre-a)" in changed.output
    assert '"event": "feature flag changed"' in changed.stderr and '"by": "sre-a"' in changed.stderr

    killed = runner.invoke(
        app, ["flags", "set", OH_PILOT, "--file", str(path), "--kill", "--by", "sre-b"]
    )
    assert killed.exit_code == 0, killed.output
    rollout = FlagFile(path).read()[OH_PILOT]
    assert (rollout.percentage, rollout.allow, rollout.killed, rollout.updated_by) == (
        25,
        ("v-1",),
        True,
        "sre-b",
    )

    shown = json.loads(runner.invoke(app, ["flags", "--file", str(path), "--json"]).stdout)
    assert shown[OH_PILOT]["killed"] is True


def test_a_bad_flag_name_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    shutil.copy(DEFAULT_FILE, path)
    result = CliRunner().invoke(
        app, ["flags", "set", "mhv_typo", "--file", str(path), "--percentage", "5"]
    )
    assert result.exit_code != 0
    assert "unknown flag mhv_typo" in result.output
