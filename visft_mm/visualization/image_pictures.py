"""Pictures of one image: a ViSFT model's predictions of every task drawn on
it, for demo/image_demo.py and the CPU demo.

Each task's image goes through that task's test pipeline of the config (less
``LoadAnnotations``, as mmdet's ``DetInferencer`` does), the model's
``test_step`` and :class:`ViSFTVisualizer` with the task dataset's class
names. Written here because mmdet's ``init_detector``/``DetInferencer`` take
one task of one dataset; the model is loaded as tools/test.py loads it: built
from the config (a ``FrozenBackbone`` loads its weights from its
``init_cfg``), then the checkpoint, whose every key must fit the model.
"""
import copy
import os
import os.path as osp
from typing import Dict, Optional

import mmcv
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope

from visft_mm.checkpoints.io import (CheckpointError, load_model_state_dict,
                                     module_misfit)
from visft_mm.registry import DATASETS, MODELS
from visft_mm.utils.required_paths import InputError
from .visft_visualizer import ViSFTVisualizer

# The visualizer of the pictures, apart from a runner's.
VISUALIZER_NAME = 'visft_mm_image_pictures'


def init_visft(config: Config,
               checkpoint: Optional[str],
               device: str = 'cpu') -> torch.nn.Module:
    """The ViSFT model of ``config`` in eval mode on ``device``, with the
    weights of ``checkpoint``; without one, its ``init_weights`` (the
    stage-1 heads of ``task_checkpoints``, LoRA at zero)."""
    init_default_scope(config.get('default_scope', 'visft_mm'))
    model = MODELS.build(config.model)
    if not hasattr(model, 'task_names'):
        raise InputError(f'the config builds a {type(model).__name__}; '
                         'pictures are drawn of ViSFT models')
    if checkpoint is None:
        model.init_weights()
    else:
        state_dict = load_model_state_dict(checkpoint)
        misfit = module_misfit(model, state_dict)
        if misfit:
            raise CheckpointError(
                f'{checkpoint} does not fit the model: {misfit}')
        model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()


def task_dataset(config: Config, task: str, num_tasks: int) -> dict:
    """The test dataset config of ``task``: ``test_dataloader[task]`` of a
    multi-task config, ``test_dataloader`` of a single-task one; a wrapped
    dataset's innermost one."""
    loaders = config.test_dataloader
    dataset = (loaders[task] if num_tasks > 1 else loaders).dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    return dataset


def dataset_meta(dataset: dict) -> dict:
    """The metainfo that the dataset of ``dataset`` (a config) would have:
    its class's ``METAINFO`` updated with the config's ``metainfo``, as
    mmengine's ``BaseDataset`` makes it, without reading any file."""
    dataset_class = DATASETS.get(dataset.type)
    return {
        **copy.deepcopy(getattr(dataset_class, 'METAINFO', {})),
        **dataset.get('metainfo', {})
    }


def test_pipeline(dataset: dict) -> Compose:
    """The dataset's pipeline, less the ``LoadAnnotations`` of an image
    without annotations."""
    return Compose([
        step for step in dataset.pipeline
        if not step['type'].endswith('LoadAnnotations')
    ])


@torch.no_grad()
def draw_image_pictures(model: torch.nn.Module,
                        config: Config,
                        image: str,
                        out_dir: Optional[str],
                        score_thr: float = 0.3,
                        show: bool = False) -> Dict[str, str]:
    """Draw every task's prediction on ``image`` into
    ``out_dir/<task>/<image name>`` (and a window if ``show``); returns task
    → picture path (none without ``out_dir``)."""
    if not osp.isfile(image):
        raise InputError(f'{image}: no such image')
    visualizer = ViSFTVisualizer.get_instance(VISUALIZER_NAME)
    rgb = mmcv.imread(image, channel_order='rgb')
    pictures = {}
    for task in model.task_names:
        dataset = task_dataset(config, task, len(model.task_names))
        batch = pseudo_collate(
            [test_pipeline(dataset)(dict(img_path=image, img_id=0))])
        batch['task'] = task
        sample = model.test_step(batch)[0]
        visualizer.dataset_meta = dataset_meta(dataset)
        out_file = None
        if out_dir is not None:
            os.makedirs(osp.join(out_dir, task), exist_ok=True)
            out_file = pictures[task] = osp.join(out_dir, task,
                                                 osp.basename(image))
        visualizer.add_datasample(
            f'{task}: {osp.basename(image)}',
            rgb,
            data_sample=sample,
            draw_gt=False,
            show=show,
            out_file=out_file,
            pred_score_thr=score_thr)
    return pictures
