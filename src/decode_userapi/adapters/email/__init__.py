"""EmailSender adapters: a logging stand-in for when email is not configured, and an in-memory fake."""
