"""Task heads that mmdet/mmseg/mmpretrain do not provide."""
from .caption_head import ShowAttendTellHead

__all__ = ['ShowAttendTellHead']
