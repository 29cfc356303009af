"""The renewal service (Medications side): decides whether a prescription may be renewed, starts the
flow to SM, and keeps the journey ledger that says where each renewal is and whose tool it is at."""
