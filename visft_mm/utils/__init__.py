"""Helpers shared by the library and its tools."""
from .io import save_atomic

__all__ = ['save_atomic']
