from .eva_vit import EVAViT

__all__ = ['EVAViT']
