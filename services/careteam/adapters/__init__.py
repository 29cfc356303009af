"""Where the care-team service reads the Veteran's care teams from."""
