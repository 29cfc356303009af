"""rxsm's versioned event contracts (pydantic v2), exported as JSON Schema under ``schemas/json``."""
