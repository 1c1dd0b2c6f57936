"""The interfaces the core needs from the outside world (one module per port)."""
