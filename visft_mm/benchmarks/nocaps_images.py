"""NoCaps with one sample per image.

mmpretrain's ``NoCaps`` makes a sample of every reference caption, so each
image of the validation split (4,500 images, about 45,000 captions) would be
captioned about ten times. This subclass keeps the first sample of each image;
the references are read by the metric from the same annotation file.
"""
from typing import List

from mmpretrain.datasets import NoCaps

from visft_mm.registry import DATASETS


@DATASETS.register_module()
class NoCapsImages(NoCaps):
    """mmpretrain's ``NoCaps`` without repeated images, in annotation order."""

    def load_data_list(self) -> List[dict]:
        first_sample_of_image = {}
        for data_info in super().load_data_list():
            first_sample_of_image.setdefault(data_info['image_id'], data_info)
        return list(first_sample_of_image.values())
