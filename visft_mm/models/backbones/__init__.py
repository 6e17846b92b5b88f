from .eva_vit import EVAViT
from .features_as_input import FeaturesAsInput

__all__ = ['EVAViT', 'FeaturesAsInput']
