"""The care-team service (SM side): the care teams a renewal or a new message can go to."""
