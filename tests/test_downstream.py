"""visft_mm used from other OpenMMLab projects: a stage-1 run's checkpoint
opens in mmdet's ``init_detector``, user configs inherit ``visft_mm::``
configs from any directory, mmdet configs build visft_mm's backbone, and
which attention layouts LoRAModel can adapt. The config snippets here
are the ones the README shows users."""
import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tiny import (TINY_VIT, run_script, tiny_detection_cfg,
                  tiny_vit_checkpoint, with_tiny_vit)

from visft_mm.models import EVAViT, FrozenBackbone, LoRAModel
from visft_mm.normalisation import CLIP_MEAN, CLIP_STD
from visft_mm.utils.cli import build_runner

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, cwd: Path, *args: str) -> dict:
    """Runs ``code`` with ``args`` in a fresh interpreter in ``cwd``, with
    this checkout on PYTHONPATH; returns the JSON it prints last."""
    done = run_script('-c', code, *args, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1])


# ------------------------------------------------ checkpoints open anywhere
OPEN_IN_MMDET = textwrap.dedent("""
    import json, sys
    import torch
    run, checkpoint, image, out = sys.argv[1:]
    try:
        torch.load(checkpoint, map_location='cpu', weights_only=True)
        refused = ''
    except Exception as error:
        refused = str(error)
    import visft_mm  # noqa: F401
    from mmdet.apis import inference_detector, init_detector
    model = init_detector(run, checkpoint, device='cpu')
    torch.save(
        dict([*model.named_parameters(), *model.named_buffers()]), out)
    boxes = inference_detector(model, image).pred_instances.bboxes
    print(json.dumps(dict(refused=refused, type=type(model).__name__,
                          classes=list(model.dataset_meta['classes']),
                          boxes=list(boxes.shape))))
""")


def test_stage1_detection_checkpoint_opens_in_mmdet_init_detector(
        demo_coco, tmp_path, monkeypatch):
    """A tiny stage-1 detection run (the tools' runner; the demo config with
    a tiny ViT and DETR) in a directory holding ``data/demo_coco``. In a fresh
    process, torch's weights-only loader refuses its checkpoint until
    visft_mm is imported; then mmdet's ``init_detector``, given the config
    the run wrote, rebuilds the run's model (heads from the checkpoint, the
    frozen backbone from its ``init_cfg`` as the FrozenBackbone is built) and
    ``inference_detector`` runs it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data/demo_coco').symlink_to(demo_coco)
    torch.manual_seed(1)
    torch.save(
        EVAViT(arch=TINY_VIT, pretrain_img_size=112,
               with_cls_token=False).state_dict(), tmp_path / 'backbone.pth')

    cfg = Config.fromfile(
        str(ROOT / 'configs/visft/demo/demo_stage1_detection.py'))
    cfg.model.tasks.detection = tiny_detection_cfg()
    cfg.model = with_tiny_vit(cfg.model, tmp_path)
    cfg.model.backbone.module.init_cfg = dict(
        type='Pretrained', checkpoint='backbone.pth')
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.update(max_iters=1, val_begin=2)
    cfg.work_dir = 'work_dirs/stage1_detection'
    runner = build_runner(cfg)
    runner.train()
    trained = {
        k: v.detach().clone()
        for k, v in
        [*runner.model.named_parameters(), *runner.model.named_buffers()]
    }
    run_config = tmp_path / cfg.work_dir / 'demo_stage1_detection.py'
    checkpoint = tmp_path / cfg.work_dir / 'iter_1.pth'
    assert run_config.is_file() and checkpoint.is_file()

    image = next((demo_coco / 'val').iterdir())
    result = run_python(OPEN_IN_MMDET, tmp_path, str(run_config),
                        str(checkpoint), str(image), 'loaded.pth')
    assert 'HistoryBuffer' in result['refused']
    assert result['type'] == 'ViSFT'
    assert result['classes'] == ['circle', 'square', 'triangle', 'cross']
    assert result['boxes'] == [10, 4]  # max_per_img of the tiny DETR
    loaded = torch.load(tmp_path / 'loaded.pth', weights_only=True)
    assert loaded.keys() == trained.keys()
    assert any(k.startswith('backbone.') for k in loaded)
    differ = [k for k in trained if not torch.equal(loaded[k], trained[k])]
    assert not differ, f'init_detector loaded other values for {differ[:5]}'


# ----------------------------------------------- visft_mm:: config inheritance
# README, "Use visft_mm in your project": inherit a visft_mm config.
USER_STAGE2 = """\
_base_ = 'visft_mm::visft/eva_1b_stage2.py'
train_cfg = dict(max_iters=20000)
"""
# README, "Paths in the configs": data and backbone elsewhere.
USER_PATHS = """\
_base_ = 'visft_mm::visft/eva_1b_stage1_detr_8xb1-150k_coco.py'
coco = '/datasets/coco/'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=coco)))
val_dataloader = dict(dataset=dict(data_root=coco))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=coco + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
model = dict(backbone=dict(module=dict(init_cfg=dict(
    checkpoint='/models/eva_vit_g.pth'))))
"""

PARSE_USER_CONFIGS = textwrap.dedent("""
    import json
    import visft_mm  # noqa: F401
    from mmengine.config import Config
    stage2 = Config.fromfile('stage2.py')
    paths = Config.fromfile('paths.py')
    run_keys = ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator', 'model')
    print(json.dumps(dict(
        stage2=dict(
            model=stage2.model.type, scope=stage2.model._scope_,
            backbone=stage2.model.backbone.type,
            vit=stage2.model.backbone.module.module.arch,
            targets=stage2.model.backbone.targets,
            max_iters=stage2.train_cfg.max_iters,
            loop=stage2.train_cfg.type,
            default_scope=stage2.default_scope),
        paths={key: paths[key].to_dict() for key in run_keys})))
""")


def strings_in(value) -> list:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


def test_user_configs_inherit_visft_mm_configs_from_any_directory(tmp_path):
    (tmp_path / 'stage2.py').write_text(USER_STAGE2)
    (tmp_path / 'paths.py').write_text(USER_PATHS)
    result = run_python(PARSE_USER_CONFIGS, tmp_path)
    assert result['stage2'] == dict(
        model='ViSFT',
        scope='visft_mm',
        backbone='LoRAModel',
        vit='eva-g',
        targets=[dict(type='qkv', slices='qv')],
        max_iters=20000,
        loop='MultiTaskTrainLoop',
        default_scope='visft_mm')
    paths = result['paths']
    assert not [s for s in strings_in(paths) if 'data/coco' in s]
    assert paths['train_dataloader']['dataset']['dataset'][
        'data_root'] == '/datasets/coco/'
    assert paths['test_dataloader']['dataset']['data_root'] == (
        '/datasets/coco/')
    assert paths['test_evaluator']['ann_file'] == (
        '/datasets/coco/annotations/instances_val2017.json')
    assert paths['model']['backbone']['module']['init_cfg']['checkpoint'] == (
        '/models/eva_vit_g.pth')


def test_an_unknown_visft_mm_config_names_the_config_dir(tmp_path):
    user = tmp_path / 'user.py'
    user.write_text("_base_ = 'visft_mm::visft/eva_2b_stage2.py'\n")
    with pytest.raises(FileNotFoundError, match='eva_2b_stage2.py'):
        Config.fromfile(str(user))


def test_wheel_ships_every_config(tmp_path):
    """A wheel holds each file of configs/ under visft_mm/.mim/configs, where
    ``visft_mm::`` resolves (a checkout reaches them through a link)."""
    source = tmp_path / 'source'
    source.mkdir()
    for name in ('pyproject.toml', 'requirements.txt', 'README.md', 'LICENSE'):
        shutil.copy(ROOT / name, source)
    for name in ('visft_mm', 'configs'):
        shutil.copytree(
            ROOT / name,
            source / name,
            symlinks=True,
            ignore=shutil.ignore_patterns('__pycache__'))
    build = [
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w',
        str(tmp_path), '.'
    ]
    subprocess.run(
        build, cwd=source, check=True, capture_output=True, timeout=300)
    (wheel, ) = tmp_path.glob('visft_mm-*.whl')
    shipped = {
        name[len('visft_mm/.mim/configs/'):]
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith('visft_mm/.mim/configs/')
    }
    configs = {
        path.relative_to(ROOT / 'configs').as_posix()
        for path in (ROOT / 'configs').rglob('*.py')
    }
    assert 'visft/eva_1b_stage2.py' in configs
    assert shipped == configs


# ------------------------------------------------------ in an mmdet config
# README, "Use visft_mm in your project": EVAViT in an mmdet detector.
MMDET_WITH_EVAVIT = """\
_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
model = dict(
    data_preprocessor=dict(
        # CLIP's (visft_mm/normalisation.py), on the 0..255 scale
        mean=[v * 255 for v in (0.48145466, 0.4578275, 0.40821073)],
        std=[v * 255 for v in (0.26862954, 0.26130258, 0.27577711)],
        bgr_to_rgb=True,
        # EVAViT drops the pixels past the last whole 14-pixel patch
        pad_size_divisor=14),
    backbone=dict(
        _delete_=True,
        type='visft_mm.FrozenBackbone',
        module=dict(
            type='visft_mm.EVAViT',
            arch='eva-g',
            with_cls_token=False,
            init_cfg=dict(
                type='Pretrained', checkpoint='checkpoints/eva_vit_g.pth'))),
    neck=dict(in_channels=[1408]))
"""


def mmdet_config(tmp_path, text: str) -> Config:
    """``text`` as a config file, with a tiny ViT instead of EVA-ViT-G."""
    path = tmp_path / 'detr_evavit.py'
    path.write_text(text)
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.module.update(
        arch=TINY_VIT,
        init_cfg=dict(
            type='Pretrained',
            checkpoint=tiny_vit_checkpoint(tmp_path, TINY_VIT, 224)))
    cfg.model.neck.in_channels = [TINY_VIT['embed_dims']]
    return cfg


def test_mmdet_config_builds_evavit_by_prefix(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = mmdet_config(tmp_path, MMDET_WITH_EVAVIT)
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.mean == [m * 255 for m in CLIP_MEAN]
    assert preprocessor.std == [s * 255 for s in CLIP_STD]
    init_default_scope(cfg.default_scope)
    detector = MODELS.build(cfg.model)
    assert isinstance(detector.backbone.module, EVAViT)
    packed = demo_mm_inputs(1, [[3, 84, 100]], num_classes=80)
    inputs = detector.data_preprocessor(packed, False)['inputs']
    assert inputs.shape[-2:] == (84, 112)
    (features, ) = detector.backbone(inputs)
    assert features.shape[-2:] == (6, 8)


def test_unprefixed_type_fails_in_the_mmdet_scope_even_with_imports(tmp_path):
    """visft_mm registers into its own scope, so inside mmdet's scope
    ``type='FrozenBackbone'`` is unknown whatever ``custom_imports``
    imports."""
    from mmdet.registry import MODELS
    unprefixed = MMDET_WITH_EVAVIT.replace("'visft_mm.FrozenBackbone'",
                                           "'FrozenBackbone'")
    imports = "custom_imports = dict(imports=['visft_mm.models'])\n"
    cfg = mmdet_config(tmp_path, unprefixed + imports)
    init_default_scope(cfg.default_scope)
    with pytest.raises(
            KeyError, match='FrozenBackbone is not in the mmdet::model'):
        MODELS.build(cfg.model)


# --------------------------------------------------------- LoRA targets
class SeparateProjections(nn.Module):
    """Attention with one ``nn.Linear`` per projection, as in HF CLIP."""

    def __init__(self, dims: int = 16):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            nn.Linear(dims, dims) for _ in range(4))

    def forward(self, x):
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        return self.out_proj(
            nn.functional.scaled_dot_product_attention(q, k, v))


class TorchAttention(nn.Module):

    def __init__(self, dims: int = 16):
        super().__init__()
        self.attn = nn.MultiheadAttention(dims, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x)[0]


def lora_changes_output(model: LoRAModel, x: torch.Tensor) -> bool:
    """Whether a non-zero LoRA update changes the model's (first) output."""

    def output():
        out = model(x)
        return out[0] if isinstance(out, tuple) else out

    before = output().detach()
    with torch.no_grad():
        for layer in model.lora_layers.values():
            layer.lora_B.normal_()
    return not torch.allclose(output(), before)


def test_lora_on_separate_q_and_v_projections():
    torch.manual_seed(0)
    model = LoRAModel(
        FrozenBackbone(SeparateProjections(), random_weights=True),
        targets=[dict(type='q_proj'), dict(type='v_proj')],
        rank=4,
        alpha=1)
    assert sorted(model.lora_layers) == ['q_proj', 'v_proj']
    trainable = sorted(n for n, p in model.named_parameters()
                       if p.requires_grad)
    assert trainable == [
        f'module.module.{layer}.lora_{ab}' for layer in ('q_proj', 'v_proj')
        for ab in 'AB'
    ]
    assert lora_changes_output(model, torch.randn(2, 5, 16))


# README, "Use visft_mm in your project": LoRA on mmpretrain's ViT.
LORA_ON_MMPRETRAIN_VIT = """\
backbone = dict(
    type='visft_mm.LoRAModel',
    module=dict(type='mmpretrain.VisionTransformer', arch='b', img_size=224),
    targets=[dict(type='qkv', slices='qv')],
    rank=64,
    alpha=1)
"""


def test_lora_on_mmpretrain_vit_fused_qkv(tmp_path):
    path = tmp_path / 'lora_vit.py'
    path.write_text(LORA_ON_MMPRETRAIN_VIT)
    backbone = Config.fromfile(str(path)).backbone
    backbone.module.update(
        arch=dict(
            embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
        img_size=28,
        patch_size=14)
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(backbone)
    assert isinstance(model, LoRAModel)
    assert list(model.lora_layers) == ['layers.0.attn.qkv']
    assert model.lora_layers['layers.0.attn.qkv'].adapted == [0, 2]
    torch.manual_seed(0)
    assert lora_changes_output(model, torch.randn(1, 3, 28, 28))


class BEiTBlockAttention(nn.Module):

    def __init__(self, dims: int = 16):
        super().__init__()
        from mmpretrain.models.utils.attention import BEiTAttention
        self.attn = BEiTAttention(
            dims, 2, window_size=(2, 2), use_rel_pos_bias=False)

    def forward(self, x):
        return self.attn(x)


def test_lora_cannot_adapt_torch_multihead_attention():
    """nn.MultiheadAttention keeps q, k and v in one ``in_proj_weight``
    parameter, not a layer: LoRAModel refuses the attention module itself."""
    with pytest.raises(TypeError, match='MultiheadAttention, not an'):
        LoRAModel(TorchAttention(), targets=[dict(type='attn')], rank=4)


@pytest.mark.parametrize(
    'attention, target', [(TorchAttention, 'out_proj'),
                          (BEiTBlockAttention, 'qkv')],
    ids=['torch_out_proj', 'beit_qkv'])
def test_lora_never_runs_where_the_layer_is_not_called(attention, target):
    """nn.MultiheadAttention reads ``out_proj.weight`` and mmpretrain's
    BEiTAttention (q and v biases) ``qkv.weight`` without calling the layer:
    LoRA is injected but never changes the output."""
    torch.manual_seed(0)
    model = LoRAModel(attention(), targets=[dict(type=target)], rank=4)
    assert list(model.lora_layers) == [f'attn.{target}']
    assert not lora_changes_output(model, torch.randn(2, 5, 16))
