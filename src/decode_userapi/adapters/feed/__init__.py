"""ChangeFeed adapters: PostgreSQL LISTEN/NOTIFY (across replicas), and in-process (SQLite, memory)."""
