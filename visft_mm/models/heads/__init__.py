"""Task heads that mmdet/mmseg/mmpretrain do not provide."""
from .caption_head import ShowAttendTellHead
from .shifted_label_mask2former_head import ShiftedLabelMask2FormerHead

__all__ = ['ShiftedLabelMask2FormerHead', 'ShowAttendTellHead']
