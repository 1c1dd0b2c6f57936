"""Stand-ins for the services decode-userapi talks to, for integration tests."""
