"""FileStorage adapters: a local directory tree, and an in-memory fake."""
