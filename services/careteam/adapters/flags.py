"""Whether a Veteran is in the Oracle Health pilot (``mhv_secure_messaging_cerner_pilot``).

``OhPilot`` is the one question the care-team service asks; ``SettingsOhPilot`` answers it from settings
(an allow-list of Veteran ids, or on for everyone). A feature-flag service can implement the same protocol.
"""

from collections.abc import Iterable
from typing import Protocol


class OhPilot(Protocol):
    def is_on(self, veteran_id: str) -> bool:
        """Whether Oracle Health care teams are offered to this Veteran."""
        ...


class SettingsOhPilot:
    """On for the allow-listed Veterans, or for everyone."""

    def __init__(self, veterans: Iterable[str] = (), *, everyone: bool = False) -> None:
        self._veterans = frozenset(veterans)
        self._everyone = everyone

    def is_on(self, veteran_id: str) -> bool:
        return self._everyone or veteran_id in self._veterans
