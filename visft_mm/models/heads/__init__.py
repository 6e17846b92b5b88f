"""Task heads that mmdet/mmseg/mmpretrain do not provide."""
