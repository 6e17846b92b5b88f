"""Pictures and dumps of every task: tools/test.py --out and --show-dir on a
tiny stage-2 ViSFT (detection and caption) and a stage-1 one (detection),
demo/image_demo.py, and the demo's pictures before and after stage 2."""
import contextlib
import io
import pickle
import runpy
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmdet.visualization import DetLocalVisualizer
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tiny import (CAPTION_PIPELINE, IMG, ROOT, demo_det_dataloader,
                  frozen_tiny_vit, import_script, run_script, tiny_caption_cfg,
                  tiny_detection_cfg)

from visft_mm.checkpoints.io import CheckpointError
from visft_mm.demo.demo_coco import DEMO_CLASSES
from visft_mm.registry import MODELS
from visft_mm.visualization import init_visft

RUNTIME = ROOT / 'configs/_base_/default_runtime.py'
NUM_VAL = 4  # the demo_coco fixture's val images


def caption_val_dataloader(root) -> dict:
    pipeline = [dict(step) for step in CAPTION_PIPELINE]
    pipeline[1] = dict(type='Resize', scale=(IMG, IMG), keep_ratio=False)
    return dict(
        batch_size=2,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='CocoCaptionDataset',
            data_root=str(root),
            ann_file='annotations/captions_val.json',
            data_prefix=dict(img_path='val/'),
            test_mode=True,
            pipeline=pipeline))


def write_visft(root, directory, tasks) -> tuple:
    """A tiny ViSFT config on visft_mm's runtime (stage 2 with several
    tasks, stage 1 with one) and a checkpoint of its initialised model;
    returns (config path, checkpoint path)."""
    vit = frozen_tiny_vit(directory / 'pretrained')
    task_models = dict(
        detection=tiny_detection_cfg(), caption=tiny_caption_cfg(root))
    model = dict(
        type='ViSFT',
        backbone=dict(type='LoRAModel', module=vit, rank=4, alpha=4)
        if len(tasks) > 1 else vit,
        tasks={task: task_models[task]
               for task in tasks},
        freeze_tasks=len(tasks) > 1)
    loaders = dict(
        detection=demo_det_dataloader(root, 'val', train=False),
        caption=caption_val_dataloader(root))
    evaluators = dict(
        detection=dict(
            type='CocoMetric',
            metric='bbox',
            ann_file=str(root / 'annotations/instances_val.json')),
        # no caption scores: METEOR's Java takes seconds, and the pictures
        # and dumps are made without them
        caption=dict(metrics=[]))
    if len(tasks) > 1:
        test = dict(
            test_dataloader={task: loaders[task]
                             for task in tasks},
            test_evaluator={task: evaluators[task]
                            for task in tasks},
            test_cfg=dict(type='MultiTaskTestLoop'))
    else:
        test = dict(
            test_dataloader=loaders[tasks[0]],
            test_evaluator=evaluators[tasks[0]],
            test_cfg=dict(type='TestLoop'))
    body = directory / 'body.py'
    Config(dict(model=model, **test)).dump(body)
    config = directory / 'visft.py'
    # mmengine keeps one visualizer per name and process, and other tests'
    # runs make a plain one under the runtime's name: this run names its own
    config.write_text(f'_base_ = [{str(RUNTIME)!r}, {str(body)!r}]\n'
                      "log_level = 'WARNING'\n"
                      f"visualizer = dict(name='pictures_{directory.name}')\n")
    init_default_scope('visft_mm')
    torch.manual_seed(0)
    built = MODELS.build(model)
    built.init_weights()
    checkpoint = directory / 'visft.pth'
    torch.save({'meta': {}, 'state_dict': built.state_dict()}, checkpoint)
    return config, checkpoint


@pytest.fixture(scope='module')
def stage2(demo_coco, tmp_path_factory):
    return write_visft(demo_coco, tmp_path_factory.mktemp('stage2'),
                       ['detection', 'caption'])


def tools_test(monkeypatch, *args) -> None:
    """``python tools/test.py ARGS`` in this process."""
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', *map(str, args)])
    runpy.run_path(str(ROOT / 'tools/test.py'), run_name='__main__')


def spy_drawn_classes(monkeypatch) -> list:
    """The class names of every call of mmdet's instance drawing, from now
    on."""
    drawn_classes = []
    draw_instances = DetLocalVisualizer._draw_instances

    def spy(self, image, instances, classes, palette):
        drawn_classes.append(classes)
        return draw_instances(self, image, instances, classes, palette)

    monkeypatch.setattr(DetLocalVisualizer, '_draw_instances', spy)
    return drawn_classes


@pytest.fixture(scope='module')
def tested(stage2, tmp_path_factory):
    """tools/test.py --out results.pkl --show-dir pictures on the stage-2
    model; returns its work dir, the class names of every call of mmdet's
    instance drawing and the lines it printed."""
    work_dir = tmp_path_factory.mktemp('tested')
    config, checkpoint = stage2
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, \
            contextlib.redirect_stdout(printed):
        drawn_classes = spy_drawn_classes(monkeypatch)
        tools_test(monkeypatch, config, checkpoint, '--work-dir', work_dir,
                   '--out', work_dir / 'results.pkl', '--show-dir',
                   work_dir / 'pictures')
    return work_dir, drawn_classes, printed.getvalue().splitlines()


def test_out_keeps_every_task_in_a_file_of_its_own(tested):
    work_dir, _, printed = tested
    assert not (work_dir / 'results.pkl').exists()
    for task in ('detection', 'caption'):
        assert (f'predictions of {task}: {work_dir}/results.{task}.pkl'
                in printed)
    detections = pickle.loads(
        (work_dir / 'results.detection.pkl').read_bytes())
    captions = pickle.loads((work_dir / 'results.caption.pkl').read_bytes())
    assert len(detections) == len(captions) == NUM_VAL
    assert all('pred_instances' in result and 'pred_caption' not in result
               for result in detections)
    assert all(
        isinstance(result['pred_caption'], str)
        and 'pred_instances' not in result for result in captions)


def test_single_task_config_dumps_to_the_file_given_and_draws_its_task(
        demo_coco, tmp_path, monkeypatch):
    config, checkpoint = write_visft(demo_coco, tmp_path, ['detection'])
    out = tmp_path / 'results.pkl'
    tools_test(monkeypatch, config, checkpoint, '--work-dir', tmp_path,
               '--out', out, '--show-dir', tmp_path / 'pictures')
    results = pickle.loads(out.read_bytes())
    assert len(results) == NUM_VAL
    assert all('pred_instances' in result for result in results)
    assert len(list((tmp_path / 'pictures/detection').iterdir())) == NUM_VAL


def test_show_dir_draws_each_task_with_its_own_class_names(tested, demo_coco):
    work_dir, drawn_classes, printed = tested
    show_dir = work_dir / 'pictures'
    images = sorted(p.name for p in (demo_coco / 'val').iterdir())
    for task in ('detection', 'caption'):
        assert sorted(p.name for p in (show_dir / task).iterdir()) == images
        assert f'pictures of {task}: {show_dir / task}' in printed
    # ground truth and prediction of each detection image, and nothing of
    # the captions
    assert len(drawn_classes) == 2 * NUM_VAL
    assert all(tuple(classes) == DEMO_CLASSES for classes in drawn_classes)
    for name in images:
        source = mmcv.imread(str(demo_coco / 'val' / name)).astype(int)
        picture = mmcv.imread(str(show_dir / 'caption' / name)).astype(int)
        assert picture.shape == source.shape
        changed = np.abs(picture - source).sum(axis=2) > 0
        # the caption is written from the top left, wrapped to the width
        assert changed[:IMG // 8, :IMG // 2].mean() > 0.05
        assert not changed[:, -IMG // 16:].any()


def test_image_demo_writes_a_picture_of_each_task(stage2, demo_coco, tmp_path):
    config, checkpoint = stage2
    image = sorted((demo_coco / 'val').iterdir())[0]
    result = run_script('demo/image_demo.py', image, config, checkpoint,
                        '--out-dir', tmp_path, '--device', 'cpu')
    assert result.returncode == 0, result.stderr
    source = mmcv.imread(str(image))
    for task in ('detection', 'caption'):
        picture = tmp_path / task / image.name
        assert f'{task}: {picture}' in result.stdout
        assert mmcv.imread(str(picture)).shape == source.shape
    assert not np.array_equal(
        mmcv.imread(str(tmp_path / 'caption' / image.name)), source)


def test_pictures_refuse_a_checkpoint_that_does_not_fit(stage2, tmp_path):
    config, checkpoint = stage2
    state = torch.load(checkpoint, weights_only=True)
    state['state_dict']['tasks.segmentation.extra'] = torch.zeros(1)
    bad = tmp_path / 'bad.pth'
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match='tasks.segmentation.extra'):
        init_visft(Config.fromfile(str(config)), str(bad))


def test_demo_saves_pictures_of_its_val_images(stage2, demo_coco, tmp_path,
                                               capsys, monkeypatch):
    run_demo = import_script(ROOT / 'tools/misc/run_demo.py')
    config, checkpoint = stage2
    drawn_classes = spy_drawn_classes(monkeypatch)
    out_dir = tmp_path / 'after_stage2'
    run_demo.save_pictures(
        str(checkpoint), out_dir, config=config, images_dir=demo_coco / 'val')
    shown = sorted(p.name for p in (demo_coco /
                                    'val').iterdir())[:run_demo.PICTURE_IMAGES]
    for task in ('detection', 'caption'):
        assert sorted(p.name for p in (out_dir / task).iterdir()) == shown
    # the detection predictions (no ground truth) of each image
    assert len(drawn_classes) == len(shown)
    assert all(tuple(classes) == DEMO_CLASSES for classes in drawn_classes)
    assert f'{out_dir}/' in capsys.readouterr().out
    # and all of them in one: a row per image, a column per task, twice as
    # large, 8 px apart
    height, width = mmcv.imread(str(out_dir / 'detection' /
                                    shown[0])).shape[:2]
    overview = mmcv.imread(str(tmp_path / 'after_stage2.jpg'))
    assert overview.shape == (len(shown) * (2 * height + 8) - 8,
                              2 * (2 * width + 8) - 8, 3)
