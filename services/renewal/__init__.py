"""The renewal service (Medications side): accepts renewal requests for renewable prescriptions."""
