from .eva_vit import EVAViT
from .features_as_input import FeaturesAsInput
from .frozen_backbone import FrozenBackbone

__all__ = ['EVAViT', 'FeaturesAsInput', 'FrozenBackbone']
