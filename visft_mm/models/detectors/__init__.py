"""Detectors: mmdet's, adapted to run on any device, and ViSFT's official
detection head (UniT's DETR) built from mmdet's DETR."""
from .dino import AnyDeviceDINO
from .unit_detr import UniTDETR, UniTDETRHead

__all__ = ['AnyDeviceDINO', 'UniTDETR', 'UniTDETRHead']
