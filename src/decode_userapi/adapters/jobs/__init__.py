"""JobStore adapters: SQL (SQLite, PostgreSQL) through SQLAlchemy Core, and an in-memory store."""
