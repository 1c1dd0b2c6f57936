"""The Litestar HTTP entry point."""
