"""Pictures of ViSFT's predictions: boxes, masks and captions."""
from .image_pictures import draw_image_pictures, init_visft
from .visft_visualizer import ViSFTVisualizer

__all__ = ['ViSFTVisualizer', 'draw_image_pictures', 'init_visft']
