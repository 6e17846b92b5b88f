"""The out-of-domain benchmarks (configs/visft/eval/): EVA-CLIP, the ImageNet
variants, NoCaps one image per sample, the retrieval metric and the k-shot
splits of the probes.

Kept out of the training import path (:mod:`visft_mm.models`,
:mod:`visft_mm.datasets`, :mod:`visft_mm.evaluation`), since EVA-CLIP pulls
in open_clip, mmpretrain's multimodal models and timm's class lists. The
benchmark configs import this package (``custom_imports``), which registers
``EVACLIP``, ``NoCapsImages`` and ``Numpy2RetrievalRecall`` in the visft_mm
registries.
"""
from .eva_clip import EVACLIP
from .imagenet_variants import ImageNetVariant
from .nocaps_images import NoCapsImages
from .retrieval_metric import Numpy2RetrievalRecall

__all__ = [
    'EVACLIP', 'ImageNetVariant', 'NoCapsImages', 'Numpy2RetrievalRecall'
]
