"""The visualizer of ViSFT: mmdet's ``DetLocalVisualizer`` that also writes
a caption onto its image.

Boxes and masks are drawn by ``DetLocalVisualizer`` unchanged, with the class
names of its ``dataset_meta``. Written here is only the caption drawing
(mmengine's ``Visualizer.draw_texts``): mmpretrain's ``UniversalVisualizer``
draws captions, but on a visualizer of its own class, and a run has one
visualizer for all of ViSFT's tasks.
"""
import textwrap
from typing import Optional

import numpy as np
from mmdet.visualization import DetLocalVisualizer
from mmdet.visualization.palette import _get_adaptive_scales

from visft_mm.registry import VISUALIZERS

# Width of a monospace character relative to the font size, as the
# visualizer's canvas renders it.
CHAR_WIDTH = 0.9


@VISUALIZERS.register_module()
class ViSFTVisualizer(DetLocalVisualizer):
    """``DetLocalVisualizer`` for every ViSFT task: a sample with a
    ``pred_caption`` (``ImageCaptioner.predict``) is drawn as its caption,
    wrapped to the image width, on a dark band at the top left; any other
    sample as ``DetLocalVisualizer`` draws it."""

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample=None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       pred_score_thr: float = 0.3,
                       step: int = 0) -> None:
        if (draw_pred and data_sample is not None
                and 'pred_caption' in data_sample):
            image = self.draw_caption(image, data_sample.pred_caption)
            # mmdet draws nothing else of a caption sample
            data_sample = None
        super().add_datasample(name, image, data_sample, draw_gt, draw_pred,
                               show, wait_time, out_file, pred_score_thr, step)

    def draw_caption(self, image: np.ndarray, caption: str) -> np.ndarray:
        """``image`` (RGB) with ``caption`` written on it, at the font size
        mmdet gives labels on an image of its size."""
        image = image.clip(0, 255).astype(np.uint8)
        height, width = image.shape[:2]
        font_size = int(13 * _get_adaptive_scales(height * width))
        columns = max(1, int(width / (CHAR_WIDTH * font_size)) - 1)
        text = '\n'.join(textwrap.wrap(caption, columns)) or '(no words)'
        self.set_image(image)
        self.draw_texts(
            text,
            np.array([[2, 2]]),
            font_sizes=font_size,
            colors='white',
            font_families='monospace',
            bboxes=[
                dict(facecolor='black', alpha=0.6, pad=0.5, edgecolor='none')
            ])
        return self.get_image()
