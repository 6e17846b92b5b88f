"""Datasets and transforms of the ViSFT tasks."""
