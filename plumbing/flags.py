"""Per-Veteran feature flags through OpenFeature, evaluated in-process from a flagd JSON file.

The release plans roll a flow out to an allow-list of Veterans, then 5% -> 25% -> 50% -> 75% -> 100%, with
a kill switch. Each flag in the file has one shape that says exactly that::

    state DISABLED                     -> the kill switch: off for everyone, whatever else is set
    targeting.if[in targetingKey ...]  -> the allow-list: on for those Veterans
    fractional [on, p] [off, 100 - p]  -> p% of all other Veterans, by a hash of flag key + Veteran id

flagd's fractional bucketing is deterministic, so a Veteran who is in at 5% stays in at 25%. The flagd
provider re-reads the file when it changes, so running services pick a change up within a second.
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.provider import ProviderStatus

RENEWAL_FLOW = "mhv_secure_messaging_medications_renewal_request"
"""The Meds -> SM renewal flow. Off: the renewal service refuses and the Medications app falls back."""

OH_PILOT = "mhv_secure_messaging_cerner_pilot"
"""The new (Oracle Health) message flow: OH care teams are offered."""

RENEWAL_FLOW_VISTA = "rxsm_renewal_flow_vista"
RENEWAL_FLOW_ORACLE_HEALTH = "rxsm_renewal_flow_oracle_health"
"""Which EHRs the renewal flow is open for, one flag each (rxsm's own names). Off for a Veteran: the
renewal service refuses that EHR's prescriptions with ``renewal_flow_off_for_ehr``. VA's front end
offers the renewal link for Oracle Health prescriptions only; rxsm opens both by default."""

OPEN_UNLESS_LISTED = frozenset({RENEWAL_FLOW_VISTA, RENEWAL_FLOW_ORACLE_HEALTH})
"""Flags that are on for everyone when the flag file does not list them (an older file), so adding
them closes nothing. Listed, they follow the file like any flag (DISABLED is off)."""

FLAGS = (RENEWAL_FLOW, OH_PILOT, RENEWAL_FLOW_VISTA, RENEWAL_FLOW_ORACLE_HEALTH)
DEFAULT_FILE = Path(__file__).resolve().parent.parent / "config" / "flags.json"


@dataclass(frozen=True)
class Rollout:
    """One flag's rollout, as the release plan speaks of it."""

    percentage: int = 0
    allow: tuple[str, ...] = ()
    killed: bool = False
    updated_by: str | None = None
    updated_at: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.percentage <= 100:
            raise ValueError("percentage must be between 0 and 100")

    def to_flagd(self) -> dict[str, Any]:
        fractional = {"fractional": [["on", self.percentage], ["off", 100 - self.percentage]]}
        targeting = (
            {"if": [{"in": [{"var": "targetingKey"}, list(self.allow)]}, "on", fractional]}
            if self.allow
            else fractional
        )
        metadata = {
            key: value
            for key, value in (("updatedBy", self.updated_by), ("updatedAt", self.updated_at))
            if value
        }
        return {
            "state": "DISABLED" if self.killed else "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": targeting,
            "metadata": metadata,
        }

    @classmethod
    def from_flagd(cls, flag: dict[str, Any]) -> "Rollout":
        targeting = flag.get("targeting") or {}
        allow: list[str] = []
        if "if" in targeting:
            allow = targeting["if"][0]["in"][1]
            targeting = targeting["if"][2]
        weights = dict(targeting.get("fractional", [["on", 0], ["off", 100]]))
        metadata = flag.get("metadata") or {}
        return cls(
            percentage=int(weights.get("on", 0)),
            allow=tuple(allow),
            killed=flag.get("state") == "DISABLED",
            updated_by=metadata.get("updatedBy"),
            updated_at=metadata.get("updatedAt"),
        )


@dataclass
class FlagFile:
    """The flagd JSON file: read every flag's rollout, or write one atomically."""

    path: Path = field(default=DEFAULT_FILE)

    def read(self) -> dict[str, Rollout]:
        flags = json.loads(self.path.read_text())["flags"]
        return {name: Rollout.from_flagd(flag) for name, flag in flags.items()}

    def write(self, name: str, rollout: Rollout) -> None:
        document = json.loads(self.path.read_text())
        document["flags"][name] = rollout.to_flagd()
        with tempfile.NamedTemporaryFile(
            "w", dir=self.path.parent, prefix=".flags-", suffix=".json", delete=False
        ) as staged:
            json.dump(document, staged, indent=2)
            staged.write("\n")
        os.replace(staged.name, self.path)

    def change(self, name: str, by: str, **changes: Any) -> tuple[Rollout, Rollout]:
        """Apply ``changes`` to flag ``name``; returns (before, after)."""
        if name not in FLAGS:
            raise KeyError(f"unknown flag {name}; known flags: {', '.join(FLAGS)}")
        before = self.read().get(name, Rollout())
        fields = {**vars(before), **changes}
        fields.update(updated_by=by, updated_at=datetime.now(UTC).isoformat(timespec="seconds"))
        after = Rollout(**fields)
        self.write(name, after)
        return before, after


class FeatureFlags:
    """Evaluates flags for a Veteran; cheap enough for the hot path (in-process, no network)."""

    def __init__(self, path: Path = DEFAULT_FILE, poll_ms: int = 500) -> None:
        self._domain = f"rxsm-{uuid4()}"
        self._provider = FlagdProvider(
            resolver_type=ResolverType.FILE,
            offline_flag_source_path=str(path),
            deadline_ms=poll_ms,
        )
        api.set_provider_and_wait(self._provider, domain=self._domain)
        self._client: OpenFeatureClient = api.get_client(self._domain)

    def is_on(self, flag: str, veteran_id: str) -> bool:
        details = self._client.get_boolean_details(
            flag, False, EvaluationContext(targeting_key=veteran_id)
        )
        if details.error_code is ErrorCode.FLAG_NOT_FOUND:
            return flag in OPEN_UNLESS_LISTED
        return details.value

    def provider_status(self) -> ProviderStatus:
        """READY while the flag file loads; ERROR while it is missing or not valid flagd JSON (the
        last flags read still answer meanwhile), READY again once it loads (for ``/ready``)."""
        return self._client.get_provider_status()

    def cohort(self, veteran_id: str) -> str:
        """``new`` when the Veteran is in the new SM flow (the OH pilot), else ``base``."""
        return "new" if self.is_on(OH_PILOT, veteran_id) else "base"

    def close(self) -> None:
        self._provider.shutdown()
