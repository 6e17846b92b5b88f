"""Detectors: mmdet's, adapted to run on any device."""
from .dino import AnyDeviceDINO

__all__ = ['AnyDeviceDINO']
