"""Losses: mmdet's, adapted to run on any device."""
from .focal_loss import AnyDeviceFocalLoss

__all__ = ['AnyDeviceFocalLoss']
