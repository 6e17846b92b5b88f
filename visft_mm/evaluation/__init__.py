"""Metrics of the ViSFT tasks."""
