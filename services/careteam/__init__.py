"""The care-team service (SM side): resolves the care teams a renewal can be sent to."""
