"""The messaging service (SM side): renewal drafts, edits and sends."""
