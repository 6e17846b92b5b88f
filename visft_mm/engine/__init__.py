"""Training loops and hooks."""
