"""Identity adapters: the built-in identity provider and its UserStore (SQL and in memory)."""
