"""The ``rxsm`` command: run a service, and (for SREs) look into the flow."""
