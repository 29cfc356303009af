"""Whether a Veteran is in the Oracle Health pilot (``mhv_secure_messaging_cerner_pilot``).

``OhPilot`` is the one question the care-team service asks. ``FlagsOhPilot`` answers it from the shared
per-Veteran feature flags (OpenFeature, flagd's in-process file provider): the allow-list, the sticky
percentage and the kill switch in the flag file, changes applying within a second without a restart.
"""

from typing import Protocol

from plumbing.flags import OH_PILOT, FeatureFlags


class OhPilot(Protocol):
    def is_on(self, veteran_id: str) -> bool:
        """Whether Oracle Health care teams are offered to this Veteran."""
        ...


class FlagsOhPilot:
    """The OH pilot flag of ``flags``, evaluated in-process for each Veteran."""

    def __init__(self, flags: FeatureFlags) -> None:
        self._flags = flags

    def is_on(self, veteran_id: str) -> bool:
        return self._flags.is_on(OH_PILOT, veteran_id)
