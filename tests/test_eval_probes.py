"""Out-of-domain probes (configs/visft/eval): the real config files, run by
tools/train.py and tools/test.py with a tiny ViT on tiny generated datasets in
the benchmarks' own layouts.

Known answers: ADE20K-style images whose classes are solid colour regions
reach a high mIoU after a short dense probe, and the reported mIoU equals one
computed by hand from the PNGs (``reduce_zero_label``: 0 is ignored, k is
class k-1); images whose class is their colour reach a top-1 far above chance.
"""
import runpy
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.runner import Runner
from PIL import Image
from tiny import TINY_VIT

from visft_mm.benchmarks.fewshot import fewshot_lines, read_labelled_images
from visft_mm.checkpoints.io import load_model_state_dict
from visft_mm.models import EVAViT, FrozenBackbone

ROOT = Path(__file__).resolve().parents[1]
PROBES = ROOT / 'configs/visft/eval'
SEG_1B = PROBES / 'eva_1b_probe_linear-seg_8xb2-40k_ade20k-512x512.py'
SEG_4B = PROBES / 'eva_4b_probe_linear-seg_8xb2-40k_ade20k-512x512.py'
CLS_1B = PROBES / 'eva_1b_probe_linear-cls_8xb128-10e_in1k.py'
CLS_4B = PROBES / 'eva_4b_probe_linear-cls_8xb128-10e_in1k.py'
FEWSHOT_1B = PROBES / 'eva_1b_probe_linear-cls-16shot_8xb32-50e_in1k.py'
FEWSHOT_4B = PROBES / 'eva_4b_probe_linear-cls-16shot_8xb32-50e_in1k.py'
# A tiny pre-norm ViT stands in for EVA-ViT-G, a tiny post-norm one for
# EVA-ViT-E.
TINY_ARCH = {'1b': TINY_VIT, '4b': dict(TINY_VIT, post_norm=True)}
WIDTH = TINY_VIT['embed_dims']

# ADE20K PNG value -> RGB of its region; 0 ("other", ignored) is grey.
ADE_COLOURS = {
    0: (128, 128, 128),
    1: (220, 30, 30),
    2: (30, 200, 30),
    3: (30, 30, 220),
    4: (230, 220, 40)
}
CLASS_COLOURS = {
    'red': (220, 30, 30),
    'green': (30, 200, 30),
    'blue': (30, 30, 220),
    'yellow': (230, 220, 40),
    'magenta': (210, 40, 210),
    'cyan': (40, 210, 210)
}
CLASSES = tuple(sorted(
    CLASS_COLOURS))  # labels follow sorted class folders, as in ImageNet
TRAIN_PER_CLASS, VAL_PER_CLASS = 6, 3


# ----------------------------------------------------------------- helpers
def run_tool(tool: str, *args, monkeypatch):
    """Run ``tools/<tool>.py ARGS`` in this process (no second torch import);
    returns the Runner it built and what its ``train()``/``test()``
    returned."""
    seen = {}
    for method in ('train', 'test'):
        original = getattr(Runner, method)

        def keep(self, _original=original):
            seen['runner'], seen['result'] = self, _original(self)
            return seen['result']

        monkeypatch.setattr(Runner, method, keep)
    monkeypatch.setattr(sys, 'argv', [f'{tool}.py', *map(str, args)])
    runpy.run_path(str(ROOT / 'tools' / f'{tool}.py'), run_name='__main__')
    return seen['runner'], seen['result']


def tiny_config(path: Path, base: Path, overrides: str) -> Path:
    """A config inheriting the real ``base`` with test-size ``overrides``."""
    path.write_text(f'_base_ = [{str(base)!r}]\nrandomness = dict(seed=0)\n' +
                    textwrap.dedent(overrides))
    return path


def seg_overrides(size: str, data_root, checkpoint, iters: int) -> str:
    """Tiny ViT, the data at ``data_root`` and a CPU-sized schedule; the train
    pipeline is mmseg's ADE20K pipeline at a quarter of the size (126 crops),
    since 512 crops with 150 classes cost seconds per step on CPU."""
    return f"""
        model = dict(
            backbone=dict(
                module=dict(
                    arch=dict(_delete_=True, **{TINY_ARCH[size]!r}),
                    init_cfg=dict(checkpoint={str(checkpoint)!r}))),
            decode_head=dict(in_channels={WIDTH}, channels={WIDTH}))
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='RandomResize', scale=(512, 128), ratio_range=(0.5, 2.0),
                 keep_ratio=True),
            dict(type='RandomCrop', crop_size=(126, 126), cat_max_ratio=0.75),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PhotoMetricDistortion'),
            dict(type='PackSegInputs')
        ]
        train_dataloader = dict(num_workers=0, persistent_workers=False,
                                dataset=dict(data_root={str(data_root)!r},
                                             pipeline=train_pipeline))
        val_dataloader = dict(num_workers=0, persistent_workers=False,
                              dataset=dict(data_root={str(data_root)!r}))
        test_dataloader = val_dataloader
        optim_wrapper = dict(optimizer=dict(lr=1e-2))
        param_scheduler = []
        train_cfg = dict(max_iters={iters}, val_interval={iters + 1})
        default_hooks = dict(
            logger=dict(interval=10), checkpoint=dict(interval={iters}))
        """


def cls_overrides(size: str, data_root, checkpoint, epochs: int) -> str:
    dataset = (f'dict(data_root={str(data_root)!r}, '
               f'metainfo=dict(classes={CLASSES!r}))')
    return f"""
        model = dict(
            backbone=dict(
                module=dict(
                    arch=dict(_delete_=True, **{TINY_ARCH[size]!r}),
                    init_cfg=dict(checkpoint={str(checkpoint)!r}))),
            head=dict(num_classes={len(CLASSES)}, in_channels={WIDTH}))
        data_preprocessor = dict(num_classes={len(CLASSES)})
        train_dataloader = dict(
            batch_size=12, num_workers=0, dataset={dataset})
        val_dataloader = dict(batch_size=18, num_workers=0, dataset={dataset})
        test_dataloader = val_dataloader
        optim_wrapper = dict(optimizer=dict(lr=1e-2))
        param_scheduler = []
        train_cfg = dict(max_epochs={epochs}, val_interval={epochs + 1})
        default_hooks = dict(
            logger=dict(interval=1), checkpoint=dict(interval={epochs}))
        """


def noisy(rgb_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-12, 13, size=rgb_image.shape)
    return np.clip(rgb_image.astype(int) + noise, 0, 255).astype(np.uint8)


def write_ade20k(root: Path, seed: int = 0) -> None:
    """ADE20K layout: images/{training,validation}/*.jpg and PNG label maps
    under annotations/; each image is four coloured quadrants (labels 1-4 in
    random places) above a grey band labelled 0."""
    rng = np.random.default_rng(seed)
    for split, count in (('training', 6), ('validation', 2)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i in range(count):
            label = np.zeros((168, 224), np.uint8)
            quadrants = rng.permutation([1, 2, 3, 4])
            label[:72, :112], label[:72, 112:] = quadrants[0], quadrants[1]
            label[72:144, :112], label[72:144,
                                       112:] = quadrants[2], quadrants[3]
            rgb = np.array([ADE_COLOURS[v] for v in range(5)], np.uint8)[label]
            name = f'ADE_{split[:5]}_{i:08d}'
            Image.fromarray(noisy(rgb, rng)).save(
                root / 'images' / split / f'{name}.jpg', quality=95)
            Image.fromarray(label).save(root / 'annotations' / split /
                                        f'{name}.png')


def write_imagenet(root: Path, seed: int = 0) -> None:
    """ImageNet layout: train/<class>/*.JPEG, and val/*.JPEG with
    meta/val.txt; an image's class is its colour."""
    rng = np.random.default_rng(seed)
    (root / 'val').mkdir(parents=True)
    (root / 'meta').mkdir()
    val_lines = []
    for label, name in enumerate(CLASSES):
        colour = CLASS_COLOURS[name]
        (root / 'train' / name).mkdir(parents=True)
        for i in range(TRAIN_PER_CLASS + VAL_PER_CLASS):
            image = Image.fromarray(
                noisy(np.full((40, 48, 3), colour, np.uint8), rng))
            if i < TRAIN_PER_CLASS:
                image.save(
                    root / 'train' / name / f'{name}_{i}.JPEG', quality=95)
            else:
                file = f'ILSVRC2012_val_{label * VAL_PER_CLASS + i:08d}.JPEG'
                image.save(root / 'val' / file, quality=95)
                val_lines.append(f'{file} {label}')
    (root / 'meta' / 'val.txt').write_text('\n'.join(val_lines) + '\n')


def hand_miou(runner: Runner, annotation_dir: Path) -> float:
    """mIoU (%) of the runner's model on its test set, from the PNGs: value 0
    is ignored and value k is class k-1; classes absent from both prediction
    and labels do not count."""
    num_classes = runner.model.decode_head.num_classes
    intersect, union = np.zeros(num_classes), np.zeros(num_classes)
    runner.model.eval()
    for batch in runner.test_dataloader:
        with torch.no_grad():
            outputs = runner.model.test_step(batch)
        for sample in outputs:
            png = np.array(
                Image.open(annotation_dir / Path(sample.seg_map_path).name))
            label = png.astype(int) - 1
            pred = sample.pred_sem_seg.data[0].numpy()
            valid = label >= 0
            for c in range(num_classes):
                p, g = (pred == c) & valid, (label == c) & valid
                intersect[c] += (p & g).sum()
                union[c] += (p | g).sum()
    return 100 * float(np.mean(intersect[union > 0] / union[union > 0]))


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def backbones(tmp_path_factory):
    """Tiny EVAViT checkpoints (the base weights), one per config size."""
    root = tmp_path_factory.mktemp('backbones')
    paths = {}
    for size, arch in TINY_ARCH.items():
        torch.manual_seed(0)
        vit = EVAViT(arch=arch)
        vit.init_weights()
        paths[size] = root / f'tiny_eva_{size}.pth'
        torch.save(vit.state_dict(), paths[size])
    return paths


@pytest.fixture(scope='module')
def ade20k(tmp_path_factory):
    root = tmp_path_factory.mktemp('ade') / 'ADEChallengeData2016'
    write_ade20k(root)
    return root


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp('imagenet')
    write_imagenet(root)
    return root


@pytest.fixture(scope='module')
def seg_probe(backbones, ade20k, tmp_path_factory):
    """The 1b dense probe trained for 40 iterations: (config, work dir,
    runner)."""
    tmp = tmp_path_factory.mktemp('seg_probe')
    config = tiny_config(
        tmp / 'seg_1b.py', SEG_1B,
        seg_overrides('1b', ade20k, backbones['1b'], iters=40))
    with pytest.MonkeyPatch.context() as monkeypatch:
        runner, _ = run_tool(
            'train',
            config,
            '--work-dir',
            tmp / 'work',
            monkeypatch=monkeypatch)
    return config, tmp / 'work', runner


# ---------------------------------------------------------- dense probe
def test_dense_probe_learns_colour_regions_and_keeps_the_backbone(
        seg_probe, backbones):
    _, work_dir, runner = seg_probe
    base = torch.load(backbones['1b'], weights_only=True)
    backbone = runner.model.backbone.module
    assert not any(p.requires_grad for p in runner.model.backbone.parameters())
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, base[name]), name
    saved = load_model_state_dict(work_dir / 'iter_40.pth')
    assert not [k for k in saved if k.startswith('backbone.')]
    assert 'decode_head.conv_seg.weight' in saved


def test_dense_probe_test_reports_the_hand_computed_miou(
        seg_probe, ade20k, monkeypatch):
    config, work_dir, _ = seg_probe
    runner, metrics = run_tool(
        'test',
        config,
        work_dir / 'iter_40.pth',
        '--work-dir',
        work_dir / 'test',
        monkeypatch=monkeypatch)
    assert metrics['mIoU'] > 80
    expected = hand_miou(runner, ade20k / 'annotations' / 'validation')
    assert metrics['mIoU'] == pytest.approx(expected, abs=0.01)


def test_dense_probe_eva_4b_trains_and_tests(backbones, ade20k, tmp_path,
                                             monkeypatch):
    config = tiny_config(tmp_path / 'seg_4b.py', SEG_4B,
                         seg_overrides('4b', ade20k, backbones['4b'], iters=2))
    runner, _ = run_tool(
        'train', config, '--work-dir', tmp_path, monkeypatch=monkeypatch)
    assert runner.model.backbone.module.arch_settings['post_norm']
    _, metrics = run_tool(
        'test',
        config,
        tmp_path / 'iter_2.pth',
        '--work-dir',
        tmp_path,
        monkeypatch=monkeypatch)
    assert 0 <= metrics['mIoU'] <= 100


# ------------------------------------------------- linear / few-shot probe
def test_linear_probe_separates_colours_and_keeps_the_backbone(
        backbones, imagenet, tmp_path, monkeypatch):
    config = tiny_config(
        tmp_path / 'cls_1b.py', CLS_1B,
        cls_overrides('1b', imagenet, backbones['1b'], epochs=3))
    runner, _ = run_tool(
        'train', config, '--work-dir', tmp_path, monkeypatch=monkeypatch)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert losses[-1] < losses[0] / 4
    base = torch.load(backbones['1b'], weights_only=True)
    for name, tensor in runner.model.backbone.module.state_dict().items():
        assert torch.equal(tensor, base[name]), name
    saved = load_model_state_dict(tmp_path / 'epoch_3.pth')
    assert not [k for k in saved if k.startswith('backbone.')]
    _, metrics = run_tool(
        'test',
        config,
        tmp_path / 'epoch_3.pth',
        '--work-dir',
        tmp_path,
        monkeypatch=monkeypatch)
    chance = 100 / len(CLASSES)
    assert metrics['accuracy/top1'] > 3 * chance
    assert metrics['accuracy/top5'] >= metrics['accuracy/top1']


def test_linear_probe_eva_4b_trains_and_tests(backbones, imagenet, tmp_path,
                                              monkeypatch):
    config = tiny_config(
        tmp_path / 'cls_4b.py', CLS_4B,
        cls_overrides('4b', imagenet, backbones['4b'], epochs=1))
    run_tool('train', config, '--work-dir', tmp_path, monkeypatch=monkeypatch)
    _, metrics = run_tool(
        'test',
        config,
        tmp_path / 'epoch_1.pth',
        '--work-dir',
        tmp_path,
        monkeypatch=monkeypatch)
    assert {'accuracy/top1', 'accuracy/top5'} <= set(metrics)


@pytest.mark.parametrize('size,config', [('1b', FEWSHOT_1B),
                                         ('4b', FEWSHOT_4B)])
def test_fewshot_probe_trains_on_the_split_the_tool_wrote(
        size, config, backbones, imagenet, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [
        'make_fewshot_split.py',
        str(imagenet), '--shots', '2', '--seed', '0'
    ])
    runpy.run_path(
        str(ROOT / 'tools/misc/make_fewshot_split.py'), run_name='__main__')
    config = tiny_config(
        tmp_path / f'fewshot_{size}.py', config,
        cls_overrides(size, imagenet, backbones[size], epochs=1))
    runner, _ = run_tool(
        'train',
        config,
        '--work-dir',
        tmp_path,
        '--cfg-options',
        'train_dataloader.dataset.ann_file=meta/train_2shot_seed0.txt',
        monkeypatch=monkeypatch)
    assert len(runner.train_dataloader.dataset) == 2 * len(CLASSES)
    _, metrics = run_tool(
        'test',
        config,
        tmp_path / 'epoch_1.pth',
        '--work-dir',
        tmp_path,
        monkeypatch=monkeypatch)
    assert 'accuracy/top1' in metrics


def test_fewshot_split_has_k_per_class_and_depends_only_on_the_seed(
        imagenet, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [
        'make_fewshot_split.py',
        str(imagenet), '--shots', '4', '--seed', '0', '--out',
        'meta/four_shot.txt'
    ])
    runpy.run_path(
        str(ROOT / 'tools/misc/make_fewshot_split.py'), run_name='__main__')
    lines = (imagenet / 'meta/four_shot.txt').read_text().splitlines()
    by_label, num_classes = read_labelled_images(str(imagenet), 'train')
    assert num_classes == len(CLASSES)
    assert fewshot_lines(
        by_label, shots=4, seed=0, num_classes=num_classes) == lines
    labels = [int(line.rsplit(' ', 1)[1]) for line in lines]
    assert labels == sorted(labels) and all(
        labels.count(c) == 4 for c in range(num_classes))
    assert len(set(lines)) == len(lines)
    assert all((imagenet / 'train' / line.rsplit(' ', 1)[0]).is_file()
               for line in lines)
    shuffled = {label: paths[::-1] for label, paths in by_label.items()}
    assert fewshot_lines(
        shuffled, shots=4, seed=0, num_classes=num_classes) == lines
    assert fewshot_lines(
        by_label, shots=4, seed=1, num_classes=num_classes) != lines
    with pytest.raises(
            ValueError,
            match=f'{num_classes} classes have fewer than 7 images'):
        fewshot_lines(by_label, shots=7, seed=0, num_classes=num_classes)


def test_fewshot_split_reads_an_annotation_file_source(imagenet):
    by_label, num_classes = read_labelled_images(str(imagenet), 'val')
    # classes known only from the labels in meta/val.txt
    assert num_classes is None
    assert {
        label: len(paths)
        for label, paths in by_label.items()
    } == {
        label: VAL_PER_CLASS
        for label in range(len(CLASSES))
    }


# ------------------------------------------------------------ missing assets
def missing_inputs_error(config: Path, monkeypatch, tool='train') -> str:
    """The error tools/train.py (or ``tool``) exits with for ``config`` (its
    required_paths are checked before anything is built)."""
    with pytest.raises(SystemExit) as error:
        run_tool(tool, config, monkeypatch=monkeypatch)
    message = str(error.value)
    assert message.startswith('error: missing input files')
    return message


def test_missing_ade20k_names_every_folder_and_the_download(
        backbones, tmp_path, monkeypatch):
    images_only = tmp_path / 'ADEChallengeData2016'
    (images_only / 'images' / 'training').mkdir(parents=True)
    for data_root, missing in (
        (tmp_path / 'nowhere', [
            'nowhere/images/training', 'nowhere/annotations/training',
            'nowhere/images/validation', 'nowhere/annotations/validation'
        ]),
        (images_only, [
            'ADEChallengeData2016/annotations/training',
            'ADEChallengeData2016/images/validation',
            'ADEChallengeData2016/annotations/validation'
        ]),
    ):
        config = tiny_config(
            tmp_path / 'seg.py', SEG_1B,
            seg_overrides('1b', data_root, backbones['1b'], iters=1))
        message = missing_inputs_error(config, monkeypatch)
        problems = message.split('\n')[1:]
        assert len(problems) == len(missing)
        for path, problem in zip(missing, problems):
            assert path in problem and 'ADEChallengeData2016.zip' in problem


def test_testing_a_probe_needs_no_training_folder(backbones, tmp_path,
                                                  monkeypatch):
    config = tiny_config(
        tmp_path / 'seg.py', SEG_1B,
        seg_overrides('1b', tmp_path / 'nowhere', backbones['1b'], iters=1))
    message = missing_inputs_error(config, monkeypatch, tool='test')
    problems = message.split('\n')[1:]
    assert len(problems) == 2
    for path, problem in zip(
        ['nowhere/images/validation', 'nowhere/annotations/validation'],
            problems):
        assert path in problem


@pytest.mark.parametrize('size,config,backbone_hint',
                         [('1b', CLS_1B, 'LAVIS eva_vit_g.pth'),
                          ('4b', CLS_4B, 'EVA02_CLIP_E_psz14_plus_s9B.pt')])
def test_missing_imagenet_and_backbone_are_named_with_how_to_get_them(
        size, config, backbone_hint, backbones, tmp_path, monkeypatch):
    overrides = cls_overrides(
        size, tmp_path / 'nowhere', tmp_path / 'absent.pth', epochs=1)
    message = missing_inputs_error(
        tiny_config(tmp_path / 'cls.py', config, overrides), monkeypatch)
    problems = message.split('\n')[1:]
    assert len(problems) == 3
    assert 'backbone to probe not found at' in problems[0]
    assert 'absent.pth' in problems[0] and backbone_hint in problems[0]
    assert 'merge_lora.py' in problems[0]
    for problem, split in zip(problems[1:], ('train', 'val')):
        assert f'nowhere/{split} ' in problem
        assert 'image-net.org' in problem


def test_missing_fewshot_split_names_the_tool_that_writes_it(
        backbones, imagenet, tmp_path, monkeypatch):
    config = tiny_config(
        tmp_path / 'fewshot.py', FEWSHOT_1B,
        cls_overrides('1b', imagenet, backbones['1b'], epochs=1))
    message = missing_inputs_error(config, monkeypatch)
    assert len(message.split('\n')) == 2
    assert 'meta/train_16shot_seed0.txt' in message
    assert 'make_fewshot_split.py' in message

    monkeypatch.setattr(
        sys, 'argv',
        ['make_fewshot_split.py',
         str(tmp_path / 'nowhere'), '--shots', '2'])
    with pytest.raises(
            SystemExit, match='nowhere/train not found.*image-net.org'):
        runpy.run_path(
            str(ROOT / 'tools/misc/make_fewshot_split.py'),
            run_name='__main__')


def test_frozen_backbone_refuses_a_module_it_could_not_reload():
    with pytest.raises(ValueError, match='Pretrained'):
        FrozenBackbone(module=dict(type='EVAViT', arch=TINY_VIT))
