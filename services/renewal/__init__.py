"""The renewal service (Medications side): decides whether a prescription may be renewed and starts
the flow to SM. The journey service (services/journey) follows each renewal from there."""
