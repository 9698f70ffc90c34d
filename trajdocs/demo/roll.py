"""ROLL (being written)."""
WRITERS: dict = {}
