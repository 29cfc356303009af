"""The messaging service's edges: its database and the upstream Secure Messaging system."""
