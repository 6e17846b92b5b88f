"""Stage 2 on the released heads: configs/visft/eva_1b_stage2_official-heads.py
as it ships (bf16 optimizer wrapper, pipelines, hooks), with a tiny ViT and
random heads in the released layout converted by convert_released_heads,
trains one iteration of each task: finite losses, only LoRA moves, every
head and backbone tensor stays bit-identical to what was loaded."""
import json

import pytest
import torch
from mmengine.config import Config
from official_layouts import released_file
from paper_configs import (RecordStepsForTest, assert_finite_losses,
                           autocast_supported, seed_drawing_every_task_first,
                           snapshot, tiny_paper_config)
from tiny import ROOT, TINY_VIT

from visft_mm.analysis.synthetic import vit_config
from visft_mm.checkpoints.io import save_atomic
from visft_mm.checkpoints.official_heads import convert_released_heads
from visft_mm.utils.cli import build_runner
from visft_mm.utils.required_paths import missing_required_paths

CONFIG = 'eva_1b_stage2_official-heads.py'
CONFIGS = ROOT / 'configs/visft'
LORA = ('lora_A', 'lora_B')


def converted_heads(folder, vocab: int):
    """Random released files of the three tasks at the tiny ViT's width,
    converted into one checkpoint: (path, ReleasedHeads)."""
    files = {}
    for seed, task in enumerate(('detection', 'segmentation', 'caption')):
        files[task] = folder / f'{task}_heads.ckpt'
        torch.save(
            released_file(task, TINY_VIT['embed_dims'], vocab, seed),
            files[task])
    heads = convert_released_heads(files)
    path = folder / 'visft_official_heads.pth'
    save_atomic(heads.checkpoint(), path)
    return path, heads


@pytest.mark.skipif(
    not autocast_supported(torch.bfloat16), reason='no bfloat16 autocast')
def test_stage2_on_converted_heads_moves_only_lora(paper_coco, tmp_path):
    cfg = tiny_paper_config(CONFIG, paper_coco, tmp_path)
    assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    tasks = cfg.model.tasks
    word_map = json.loads(open(tasks.caption.head.vocab_file).read())
    tasks.caption.head.vocab_size = len(word_map)  # the test's word map
    path, heads = converted_heads(tmp_path, len(word_map))
    cfg.model.task_checkpoints = {task: str(path) for task in tasks}
    ratios = cfg.train_cfg.task_ratios
    cfg.randomness = dict(
        seed=seed_drawing_every_task_first(
            list(ratios), list(ratios.values())))
    cfg.train_cfg.update(max_iters=len(ratios), val_begin=len(ratios) + 1)

    runner = build_runner(cfg)
    runner.train()

    steps = next(h for h in runner.hooks
                 if isinstance(h, RecordStepsForTest)).steps
    assert sorted(step['task'] for step in steps) == sorted(ratios)
    for step in steps:
        assert_finite_losses(step, step['task'])
        assert step['moved'] and all(k.endswith(LORA)
                                     for k in step['moved']), step['moved']
    # the heads are the converted ones, bit for bit, after training too
    now = snapshot(runner.model)
    assert all(torch.equal(now[k], v) for k, v in heads.state_dict.items())
    assert {k
            for k in runner.model.state_dict()
            if k.startswith('tasks.')} == set(heads.state_dict)


IMAGENET = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


@pytest.mark.parametrize('size,arch,width', [('1b', 'eva-g', 1408),
                                             ('4b', 'eva-e', 1792)])
def test_config_is_stage2_with_the_released_heads_conventions(
        size, arch, width):
    """Everything but the task models, their checkpoint and the files it
    asks for is eva_{size}_stage2.py's; the task models take the released
    heads' inputs and targets."""
    cfg = Config.fromfile(
        str(CONFIGS / f'eva_{size}_stage2_official-heads.py'))
    plain = Config.fromfile(str(CONFIGS / f'eva_{size}_stage2.py'))
    for key in plain:
        if key not in ('model', 'required_paths'):
            assert cfg[key] == plain[key], key
    model, plain_model = cfg.model.to_dict(), plain.model.to_dict()
    for key in ('tasks', 'task_checkpoints'):
        model.pop(key), plain_model.pop(key)
    assert model == plain_model and vit_config(cfg.model.backbone).arch == arch
    assert set(cfg.model.task_checkpoints.values()) == {
        f'checkpoints/visft_official_heads_{arch.replace("-", "_")}.pth'
    }
    tasks = cfg.model.tasks
    for task in tasks.values():
        assert dict(
            mean=task.data_preprocessor.mean,
            std=task.data_preprocessor.std) == IMAGENET
    detection, segmentation = tasks.detection, tasks.segmentation
    assert detection.type == 'visft_mm.UniTDETR'
    assert detection.bbox_head.num_classes == 91  # + no-object: 92 rows
    assert detection.neck.in_channels == [width]
    assert detection.data_preprocessor.pad_size_divisor == 1
    assert segmentation.panoptic_head.type == (
        'visft_mm.ShiftedLabelMask2FormerHead')
    assert segmentation.panoptic_head.in_channels == [width]
    assert segmentation.data_preprocessor.type == (
        'visft_mm.PadThenNormalizeDetDataPreprocessor')
    assert segmentation.data_preprocessor.pad_value == 128
    assert tasks.caption.head.in_channels == width
    assert tasks.caption.head.vocab_size == 9490
    inputs, plain_inputs = cfg.required_paths, plain.required_paths
    for group in plain_inputs:
        if group not in ('word_map', 'stage1'):
            assert inputs[group] == plain_inputs[group], group
    missing = '\n'.join(missing_required_paths(cfg))
    assert 'official_heads2visft.py' in missing
    assert 'run stage 1 first' not in missing
    assert ('build_caption_vocab.py --official data/coco/annotations/'
            f'dataset_coco.json {tasks.caption.head.vocab_file}') in missing
