"""Helpers shared by the library and its tools."""
