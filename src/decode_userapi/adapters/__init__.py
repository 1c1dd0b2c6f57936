"""Adapters: the ports implemented over real systems, and in memory."""
