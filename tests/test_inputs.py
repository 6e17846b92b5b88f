"""Inputs are checked before anything is built: every training config names
its missing files with how to get them (tools/train.py, before the model and
the config dump), a bad annotation file or a missing image stops the dataset
build with one error naming the file, and tools/test.py warns when it would
test untrained heads."""
import json
import logging
import os
import runpy
import sys
import time
from pathlib import Path

import mmengine.logging
import pytest
from mmengine.config import Config
from tiny import ROOT, run_script, tiny_vit_checkpoint

from visft_mm.analysis.synthetic import vit_config
from visft_mm.datasets import CheckedCocoDataset, CocoCaptionDataset
from visft_mm.utils.required_paths import InputError, missing_required_paths

CONFIGS = ROOT / 'configs/visft'
TRAINING_CONFIGS = sorted([
    *CONFIGS.glob('eva_*_stage1_*.py'), *CONFIGS.glob('eva_*_stage2*.py'),
    *(CONFIGS / 'demo').glob('*.py')
])


def dataset_files(cfg: Config):
    """(annotation file, image folder) of every train dataset of a config,
    as the datasets join them."""
    loaders = cfg.train_dataloader
    loaders = loaders.values() if 'dataset' not in loaders else [loaders]
    for loader in loaders:
        dataset = loader.dataset
        while 'ann_file' not in dataset:
            dataset = dataset.dataset
        prefix = dataset.data_prefix.get('img',
                                         dataset.data_prefix.get('img_path'))
        yield (os.path.join(dataset.data_root, dataset.ann_file),
               os.path.join(dataset.data_root, prefix))


@pytest.mark.parametrize(
    'path', TRAINING_CONFIGS, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_training_config_lists_every_input(path, tmp_path, monkeypatch):
    """Every file the model and the train datasets read, under its key."""
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(path))
    report = '\n'.join(missing_required_paths(cfg))
    backbone = cfg.model.backbone
    vit = vit_config(backbone)
    expected = [vit.init_cfg.checkpoint]
    for ann_file, images in dataset_files(cfg):
        expected += [ann_file, images.rstrip('/')]
    if 'caption' in cfg.model.tasks:
        expected.append(cfg.model.tasks.caption.head.vocab_file)
    expected += cfg.model.get('task_checkpoints', {}).values()
    for file in expected:
        assert f' {file}' in report, file


def test_inputs_set_to_none_are_not_checked(tmp_path, monkeypatch):
    """``--cfg-options model.task_checkpoints=None`` and the like."""
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(CONFIGS / 'demo/demo_stage2.py'))
    cfg.merge_from_dict({
        'model.task_checkpoints': None,
        'model.backbone.module.module.init_cfg': None
    })
    report = '\n'.join(missing_required_paths(cfg))
    assert 'demo train captions not found' in report
    assert 'stage-1' not in report and 'demo backbone' not in report


@pytest.mark.parametrize('config, training_only, needed', [
    ('eva_1b_stage2.py', [
        'COCO train2017 images', 'COCO train2014 images',
        'stage-1 caption checkpoint'
    ], ['COCO val2017 images', 'COCO val2014 images', 'EVA-ViT weights']),
    ('eva_1b_stage2_official-heads.py', ['released stage-1 heads'
                                         ], ['official caption word map']),
    ('demo/demo_stage2.py', [
        'demo train captions', 'stage-1 detection checkpoint'
    ], ['demo val captions', 'demo backbone']),
    ('eval/eva_1b_probe_linear-seg_8xb2-40k_ade20k-512x512.py',
     ['train_dataloader'], ['val_dataloader', 'EVA-ViT-G backbone']),
    ('eval/eva_1b_probe_linear-cls-16shot_8xb32-50e_in1k.py',
     ['k-shot ImageNet-1k split'], ['val_dataloader']),
])
def test_testing_needs_no_training_input(config, training_only, needed,
                                         tmp_path, monkeypatch):
    """tools/test.py leaves out training data and the stage-1 runs: a
    stage-2 checkpoint holds the heads."""
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(CONFIGS / config))
    for_training = '\n'.join(missing_required_paths(cfg))
    for_testing = '\n'.join(missing_required_paths(cfg, training=False))
    for text in training_only:
        assert text in for_training and text not in for_testing, text
    for text in needed:
        assert text in for_training and text in for_testing, text


def assert_stops_before_building(result, elapsed: float) -> str:
    """One ``error:`` message, no traceback, no config dump, no model."""
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'Traceback' not in output
    assert 'Config:' not in output and 'Environment info' not in output
    assert elapsed < 60  # building the 4.4B model alone takes longer
    return result.stderr


@pytest.mark.parametrize('config, expected', [
    ('eva_4b_stage2.py', [
        'caption word map not found at data/coco/annotations/'
        'WORDMAP_coco_5_cap_per_img_5_min_word_freq.json',
        '`python tools/misc/build_caption_vocab.py '
        'data/coco/annotations/dataset_coco.json data/coco/annotations/'
        'WORDMAP_coco_5_cap_per_img_5_min_word_freq.json`',
        'COCO train2017 images not found at data/coco/train2017',
        'COCO val2014 images not found at data/coco/val2014',
        'COCO train2017 instance annotations not found at '
        'data/coco/annotations/instances_train2017.json',
        "Karpathy's COCO split not found at "
        'data/coco/annotations/dataset_coco.json',
        'EVA-ViT weights not found at '
        'checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt',
        'eva2visft.py',
        'stage-1 caption checkpoint not found at work_dirs/'
        'eva_4b_stage1_caption_8xb32-100k_coco/iter_100000.pth '
        '(config key model.task_checkpoints.caption): run stage 1 first: '
        '`python tools/train.py configs/visft/'
        'eva_4b_stage1_caption_8xb32-100k_coco.py`',
        'stage-1 detection checkpoint not found',
        'stage-1 segmentation checkpoint not found',
    ]),
    ('eva_1b_stage1_mask2former_official_8xb1-150k_coco.py', [
        'EVA-ViT weights not found at checkpoints/eva_vit_g.pth',
        'COCO val2017 images not found at data/coco/val2017',
    ]),
    ('demo/demo_stage2.py', [
        'demo backbone not found at '
        'work_dirs/visft_demo/backbone_pretrained.pth',
        'tools/misc/pretrain_demo_backbone.py',
        'demo train captions not found at '
        'data/demo_coco/annotations/captions_train.json',
        'demo caption word map not found at '
        'data/demo_coco/annotations/vocab.json',
        'tools/misc/make_demo_coco.py',
        'stage-1 detection checkpoint not found at '
        'work_dirs/visft_demo/stage1_detection/iter_600.pth',
        'run stage 1 first: `make demo`',
    ]),
])
def test_train_tool_names_every_missing_input_first(config, expected,
                                                    tmp_path):
    start = time.monotonic()
    result = run_script(
        ROOT / 'tools/train.py', CONFIGS / config, cwd=tmp_path)
    message = assert_stops_before_building(result, time.monotonic() - start)
    assert 'error: missing input files' in message
    for text in expected:
        assert text in message


# ------------------------------------------------------------- bad files
def write_coco(root: Path, drop=None) -> Path:
    """A one-image COCO instances json under ``root`` (image present);
    ``drop=(section, field)`` leaves out a field of its first entry, or the
    whole section if ``field`` is None."""
    (root / 'img').mkdir(exist_ok=True)
    (root / 'img/1.png').touch()
    data = dict(
        images=[dict(id=1, file_name='1.png', height=8, width=8)],
        annotations=[
            dict(
                id=1,
                image_id=1,
                category_id=1,
                bbox=[1, 1, 4, 4],
                area=16,
                iscrowd=0)
        ],
        categories=[dict(id=1, name='circle')])
    if drop is not None:
        section, field = drop
        if field is None:
            del data[section]
        else:
            del data[section][0][field]
    ann_file = root / 'instances.json'
    ann_file.write_text(json.dumps(data))
    return ann_file


def coco_dataset(ann_file: Path) -> CheckedCocoDataset:
    return CheckedCocoDataset(
        ann_file=str(ann_file),
        data_prefix=dict(img=str(ann_file.parent / 'img')),
        metainfo=dict(classes=('circle', )),
        pipeline=[])


def test_coco_dataset_reads_a_good_file(tmp_path):
    dataset = coco_dataset(write_coco(tmp_path))
    assert len(dataset) == 1
    assert dataset[0]['instances'][0]['bbox'] == [1, 1, 5, 5]


@pytest.mark.parametrize('drop, content, problem', [
    (('images', None), None, "no 'images' list"),
    (('annotations', 'image_id'), None, "annotations[0] has no 'image_id'"),
    (('annotations', 'bbox'), None, "annotations[0] has no 'bbox'"),
    (None, b'{"images": [', 'not valid JSON'),
    (None, b'{"images": [], "x": "\xff"}', 'not UTF-8 text'),
    (None, b'[]', 'annotation file format'),
])
def test_bad_coco_file_is_named_with_what_is_wrong(tmp_path, drop, content,
                                                   problem):
    ann_file = write_coco(tmp_path, drop)
    if content is not None:
        ann_file.write_bytes(content)
    with pytest.raises(InputError) as error:
        coco_dataset(ann_file)
    assert str(error.value).startswith(f'{ann_file}: {problem}')


def test_missing_images_are_named_when_the_dataset_is_built(tmp_path):
    ann_file = write_coco(tmp_path)
    (tmp_path / 'img/1.png').unlink()
    with pytest.raises(InputError) as error:
        coco_dataset(ann_file)
    assert str(error.value) == (f'{ann_file}: 1 of its images not found: '
                                f'{tmp_path}/img/1.png')

    captions = tmp_path / 'captions.json'
    captions.write_text(
        json.dumps(
            dict(
                images=[dict(id=1, file_name='1.png')],
                annotations=[dict(image_id=1, caption='a circle')])))
    with pytest.raises(
            InputError, match=r'1 of its images not found: .*1\.png'):
        CocoCaptionDataset(
            ann_file=str(captions), data_prefix=dict(img_path=str(tmp_path)))


def test_train_tool_names_a_bad_file_in_one_line(tmp_path, demo_coco):
    """A demo run whose caption json is broken: one ``error:`` line naming
    it, no traceback."""
    data = tmp_path / 'data/demo_coco'
    data.parent.mkdir()
    data.symlink_to(demo_coco)
    vit = Config.fromfile(str(CONFIGS / 'demo/demo_stage1_caption.py'))
    vit = vit_config(vit.model.backbone)
    backbone = tmp_path / 'work_dirs/visft_demo/backbone_pretrained.pth'
    backbone.parent.mkdir(parents=True)
    # the frozen backbone loads when built; the datasets fail after it
    Path(tiny_vit_checkpoint(tmp_path, vit.arch,
                             vit.pretrain_img_size)).rename(backbone)
    bad = tmp_path / 'captions_train.json'
    bad.write_text('{"images": [')
    result = run_script(
        ROOT / 'tools/train.py',
        CONFIGS / 'demo/demo_stage1_caption.py',
        '--cfg-options',
        f'train_dataloader.dataset.ann_file={bad}',
        cwd=tmp_path)
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f'error: {bad}: not valid JSON')


# ----------------------------------------------------- untrained heads
def run_test_tool(monkeypatch, *args):
    """``python tools/test.py ARGS`` in this process, which stops at the
    missing inputs: its error message and the warnings it logged."""
    warnings = []

    def record(msg, logger=None, level=logging.INFO):
        if level == logging.WARNING:
            warnings.append(msg)

    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', *map(str, args)])
    with pytest.raises(SystemExit) as error:
        runpy.run_path(str(ROOT / 'tools/test.py'), run_name='__main__')
    return str(error.value), warnings


@pytest.mark.parametrize(
    'config, checkpoint, warns',
    [
        ('demo/demo_stage2.py', None, True),
        ('demo/demo_stage2.py', 'stage2.pth', False),
        # a benchmark that names all its weights
        ('eval/evaclip_g_zeroshot_imagenet.py', None, False),
    ])
def test_test_tool_warns_of_untrained_heads(config, checkpoint, warns,
                                            tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message, warnings = run_test_tool(monkeypatch, CONFIGS / config,
                                      *([checkpoint] if checkpoint else []))
    assert message.startswith('error: missing input files')
    assert warnings == ([
        'no checkpoint given and the config sets no load_from: the heads '
        'are tested untrained'
    ] if warns else [])
