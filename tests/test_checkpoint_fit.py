"""Every path that loads a checkpoint refuses surplus keys, naming them.

For each loading path (a fixture), three files: one that fits the model, one
deeper than the model (an extra block, or an extra decoder layer for a task
head), and one with an extra key. The first loads; the other two raise, and
the error reports a surplus key by name. Tiny models, CPU.
"""
from types import SimpleNamespace
from typing import Callable, Optional

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tiny import (TINY_VIT, assert_single_error, demo_det_dataloader,
                  frozen_tiny_vit, run_script_in_process, tiny_detection_cfg)
from tiny_clip import tiny_clip, tiny_clip_state_dict

from visft_mm.checkpoints.io import CheckpointError, module_misfit
from visft_mm.checkpoints.lora_files import load_lora, save_lora
from visft_mm.engine import BackboneCheckpointHook
from visft_mm.models import EVAViT, FrozenBackbone, LoRAModel
from visft_mm.registry import MODELS

ARCH = dict(embed_dims=32, num_heads=2, feedforward_channels=64)
EXTRA_VIT_KEY = 'blocks.0.attn.extra.weight'
EXTRA_TASK_KEY = 'tasks.detection.extra.weight'


def vit(num_layers: int = 2, **kwargs) -> EVAViT:
    torch.manual_seed(num_layers)
    return EVAViT(
        arch=dict(ARCH, num_layers=num_layers), pretrain_img_size=28, **kwargs)


def with_block_copied(state_dict: dict, prefix: str = '') -> dict:
    """``state_dict`` with its last block repeated as one more block."""
    last = max(
        int(k[len(prefix):].split('.')[1]) for k in state_dict
        if k.startswith(prefix + 'blocks.'))
    old, new = f'{prefix}blocks.{last}.', f'{prefix}blocks.{last + 1}.'
    return {
        **state_dict,
        **{
            k.replace(old, new): v
            for k, v in state_dict.items() if k.startswith(old)
        }
    }


def variant(case: str, fitting: dict, deeper: dict, extra_key: str) -> dict:
    """The file content of ``case``."""
    if case == 'deeper':
        return deeper
    if case == 'extra_key':
        return {**fitting, extra_key: torch.zeros(2)}
    return fitting


def load_outcome(case: str, errors, load: Callable) -> Optional[str]:
    """Run ``load``: it must succeed for the fitting file (None), and raise
    one of ``errors`` otherwise (its message)."""
    if case == 'fits':
        load()
        return None
    with pytest.raises(errors) as error:
        load()
    return str(error.value)


def tool_outcome(case: str, script: str, *args) -> Optional[str]:
    """Run a tool of the repository in this process, as :func:`load_outcome`
    runs a load: it must succeed for the fitting file (None), and otherwise
    fail with one error line and no traceback (that line)."""
    result = run_script_in_process(script, *args)
    if case == 'fits':
        assert result.returncode == 0, result.stderr
        return None
    return assert_single_error(result)


# One fixture per loading path: attempt(case, tmp_path) loads the file of
# ``case`` the way that path does and returns the error message (None if it
# loaded) and the surplus key the message must name.
@pytest.fixture
def eva_pretrained():
    """EVAViT ``init_cfg=dict(type='Pretrained')``, any EVA layout."""

    def attempt(case, tmp_path):
        path = tmp_path / 'eva.pth'
        torch.save(
            variant(case,
                    vit(2).state_dict(),
                    vit(3).state_dict(), EXTRA_VIT_KEY), path)
        model = vit(2, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        message = load_outcome(case, CheckpointError, model.init_weights)
        return message, 'blocks.2.' if case == 'deeper' else EXTRA_VIT_KEY

    return attempt


def visft_detection(directory, decoder_layers: int = 1, task_checkpoints=None):
    init_default_scope('visft_mm')
    detection = tiny_detection_cfg()
    detection.decoder.num_layers = decoder_layers
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='ViSFT',
            backbone=frozen_tiny_vit(directory, TINY_VIT, 28),
            tasks=dict(detection=detection),
            task_checkpoints=task_checkpoints))


@pytest.fixture
def task_checkpoints():
    """``ViSFT.task_checkpoints``: stage-1 heads loaded by init_weights."""

    def attempt(case, tmp_path):
        path = tmp_path / 'stage1.pth'
        state_dict = variant(
            case,
            visft_detection(tmp_path).state_dict(),
            visft_detection(tmp_path, decoder_layers=2).state_dict(),
            EXTRA_TASK_KEY)
        torch.save({'meta': {}, 'state_dict': state_dict}, path)
        model = visft_detection(
            tmp_path, task_checkpoints=dict(detection=str(path)))
        message = load_outcome(case, KeyError, model.init_weights)
        return message, ('decoder.layers.1.'
                         if case == 'deeper' else 'extra.weight')

    return attempt


@pytest.fixture
def lora_file():
    """A LoRA file (visft_mm format) into a LoRAModel."""

    def attempt(case, tmp_path):
        path, extra = tmp_path / 'lora.pth', 'blocks.0.attn.proj.lora_A'
        save_lora(LoRAModel(vit(3 if case == 'deeper' else 2), rank=4), path)
        if case == 'extra_key':
            content = torch.load(path, weights_only=True)
            content['state_dict'][extra] = torch.zeros(4, 32)
            torch.save(content, path)
        model = LoRAModel(vit(2), rank=4)
        message = load_outcome(
            case, (CheckpointError, KeyError),
            lambda: model.load_lora_state_dict(load_lora(path).state_dict))
        return message, ('blocks.2.attn.qkv.lora_A'
                         if case == 'deeper' else extra)

    return attempt


@pytest.fixture
def backbone_hook():
    """BackboneCheckpointHook: a backbone file over a module of the model."""

    def attempt(case, tmp_path):
        path = tmp_path / 'backbone.pth'
        torch.save(
            variant(case,
                    vit(2).state_dict(),
                    vit(3).state_dict(), EXTRA_VIT_KEY), path)
        model = torch.nn.Module()
        model.vision_backbone = vit(2)
        runner = SimpleNamespace(
            cfg=Config(dict(backbone_checkpoint=str(path), load_from=None)),
            model=model,
            logger=SimpleNamespace(info=lambda message: None))
        message = load_outcome(
            case, CheckpointError,
            lambda: BackboneCheckpointHook().before_test(runner))
        return message, 'blocks.2.' if case == 'deeper' else EXTRA_VIT_KEY

    return attempt


@pytest.fixture
def evaclip():
    """EVACLIP's weights from an original EVA-CLIP checkpoint."""

    def attempt(case, tmp_path):
        clip, path = tiny_clip_state_dict('g'), tmp_path / 'clip.pt'
        torch.save(
            variant(case, clip, with_block_copied(clip, 'visual.'),
                    'text.extra.weight'), path)
        message = load_outcome(
            case, CheckpointError,
            lambda: tiny_clip('g', clip_checkpoint=str(path)))
        return message, ('visual.blocks.2.'
                         if case == 'deeper' else 'text.extra.weight')

    return attempt


@pytest.fixture
def export():
    """visft2evaclip.py: a backbone written into an EVA-CLIP checkpoint."""

    def attempt(case, tmp_path):
        clip = tiny_clip_state_dict('g')
        backbone = {
            k[len('visual.'):]: v
            for k, v in clip.items()
            if k.startswith('visual.') and not k.startswith('visual.head.')
        }
        clip_path, backbone_path, out = (tmp_path / 'clip.pt',
                                         tmp_path / 'backbone.pth',
                                         tmp_path / 'out.pt')
        torch.save(clip, clip_path)
        torch.save(
            variant(case, backbone, with_block_copied(backbone),
                    EXTRA_VIT_KEY), backbone_path)
        message = tool_outcome(case, 'tools/model_converters/visft2evaclip.py',
                               backbone_path, out, '--clip-checkpoint',
                               clip_path)
        assert out.exists() == (case == 'fits')
        return message, 'blocks.2.' if case == 'deeper' else EXTRA_VIT_KEY

    return attempt


def visft_stage2(num_layers: int, directory) -> dict:
    return dict(
        type='ViSFT',
        backbone=dict(
            type='LoRAModel',
            module=frozen_tiny_vit(directory,
                                   dict(TINY_VIT, num_layers=num_layers)),
            rank=4),
        tasks=dict(detection=tiny_detection_cfg()),
        freeze_tasks=True)


def run_tool_on_stage2_checkpoint(tool: str, pieces: dict, case: str, tmp_path,
                                  *args):
    """``tools/<tool> CONFIG ARGS`` on a stage-2 ViSFT model whose checkpoint
    (path in ``args`` as ``{checkpoint}``) is the file of ``case``; the
    config holds ``pieces`` beside the model. Returns what
    :func:`load_outcome` does, and the surplus key."""
    init_default_scope('visft_mm')
    path, config = tmp_path / 'iter_10.pth', tmp_path / 'stage2.json'
    state_dict = variant(case,
                         MODELS.build(visft_stage2(2, tmp_path)).state_dict(),
                         MODELS.build(visft_stage2(3, tmp_path)).state_dict(),
                         EXTRA_TASK_KEY)
    torch.save({'meta': {}, 'state_dict': state_dict}, path)
    # A JSON config (quick to write and copy)
    Config(
        dict(
            default_scope='visft_mm',
            model=visft_stage2(2, tmp_path),
            log_level='WARNING',
            **pieces)).dump(config)
    # the tool reports the misfit as its one error message
    message = tool_outcome(case, f'tools/{tool}', config,
                           *[str(arg).format(checkpoint=path) for arg in args],
                           '--work-dir', tmp_path)
    return message, ('backbone.module.module.blocks.2.attn.qkv.lora_'
                     if case == 'deeper' else EXTRA_TASK_KEY)


def demo_loader_at_its_size(demo_coco, split: str, train: bool) -> dict:
    """The demo loader, its images at their own size: a JSON config has no
    tuples for a shape."""
    loader = demo_det_dataloader(demo_coco, split, train=train)
    resize = next(t for t in loader['dataset']['pipeline']
                  if t['type'] == 'Resize')
    resize.update(scale=None, scale_factor=1.0)
    return loader


@pytest.fixture
def tools_test_py(demo_coco):
    """tools/test.py CONFIG CHECKPOINT on a stage-2 ViSFT model."""

    def attempt(case, tmp_path):
        pieces = dict(
            test_dataloader=demo_loader_at_its_size(demo_coco, 'val', False),
            test_evaluator=dict(
                type='CocoMetric',
                metric='bbox',
                ann_file=str(demo_coco / 'annotations/instances_val.json')),
            test_cfg=dict(type='TestLoop'))
        return run_tool_on_stage2_checkpoint('test.py', pieces, case, tmp_path,
                                             '{checkpoint}')

    return attempt


@pytest.fixture
def tools_train_py(demo_coco):
    """tools/train.py CONFIG with ``load_from`` CHECKPOINT, one iteration of
    a stage-2 ViSFT model (mmengine's Runner loads it non-strictly)."""

    def attempt(case, tmp_path):
        pieces = dict(
            train_dataloader=demo_loader_at_its_size(demo_coco, 'train', True),
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=1),
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-4)))
        return run_tool_on_stage2_checkpoint('train.py', pieces, case,
                                             tmp_path, '--cfg-options',
                                             'load_from={checkpoint}')

    return attempt


@pytest.mark.parametrize('case', ['fits', 'deeper', 'extra_key'])
@pytest.mark.parametrize('loading_path', [
    'eva_pretrained', 'task_checkpoints', 'lora_file', 'backbone_hook',
    'evaclip', 'export', 'tools_test_py', 'tools_train_py'
])
def test_surplus_keys_are_refused_and_named(loading_path, case, request,
                                            tmp_path):
    message, surplus = request.getfixturevalue(loading_path)(case, tmp_path)
    if case == 'fits':
        assert message is None
    else:  # the misfit report, or the EVA conversion's (unknown tower keys)
        assert surplus in message, message
        assert 'unexpected' in message or 'no place in EVAViT' in message


def test_frozen_weights_may_be_all_absent_or_all_present():
    """module_misfit follows FrozenBackbone: LoRA in a frozen backbone
    accepts a file without the frozen weights or with all of them, and
    reports a file with some of them."""
    model = LoRAModel(FrozenBackbone(vit(2), random_weights=True), rank=4)
    full = {
        f'module.module.{k}': v
        for k, v in model.network.state_dict().items()
    }
    lora_only = model.state_dict()
    assert len(lora_only) < len(full)
    assert not module_misfit(model, lora_only)
    assert not module_misfit(model, full)
    partial = {k: v for k, v in full.items() if k != 'module.module.pos_embed'}
    assert module_misfit(model, partial).missing == ['module.module.pos_embed']
    assert module_misfit(model, {
        **lora_only, 'module.extra': torch.zeros(1)
    }).unexpected == ['module.extra']
