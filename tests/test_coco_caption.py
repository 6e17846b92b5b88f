"""CocoCaptionDataset on COCO and Karpathy layouts, its errors, the caption
pipeline built from a config, and the word-map tool."""
import json
import subprocess
from pathlib import Path

import pytest
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample
from tiny import CAPTION_PIPELINE, run_script, run_script_in_process

from visft_mm.datasets import CocoCaptionDataset, WordVocabulary
from visft_mm.registry import DATASETS
from visft_mm.utils.required_paths import InputError


def demo_dataset(root: Path, test_mode: bool, **kwargs) -> CocoCaptionDataset:
    return CocoCaptionDataset(
        data_root=str(root),
        ann_file='annotations/captions_train.json',
        data_prefix=dict(img_path='train/'),
        test_mode=test_mode,
        **kwargs)


def write_karpathy(path: Path) -> None:

    def image(cocoid: int, split: str, sentences) -> dict:
        folder = 'val2014' if split != 'train' else 'train2014'
        return dict(
            filepath=folder,
            filename=f'COCO_{folder}_{cocoid:012d}.jpg',
            split=split,
            cocoid=cocoid,
            sentences=[
                dict(raw=raw, tokens=raw.lower().split()) for raw in sentences
            ])

    path.write_text(
        json.dumps(
            dict(
                dataset='coco',
                images=[
                    image(1, 'train', ['A dog.', 'A brown dog']),
                    image(2, 'val', ['A cat.', 'A cat sleeps']),
                    image(3, 'restval',
                          ['Two dogs', 'Dogs play', 'Two dogs play']),
                    image(4, 'test', ['A bird']),
                    image(5, 'train', []),
                ])))


def test_train_mode_one_item_per_caption(small_demo_coco):
    dataset = demo_dataset(small_demo_coco, test_mode=False)
    captions = json.loads(
        (small_demo_coco / 'annotations/captions_train.json').read_text())
    assert len(dataset) == 6 * 5
    for i in range(len(dataset)):
        item = dataset.get_data_info(i)
        assert item['image_id'] == i // 5 + 1
        assert item['img_path'] == str(small_demo_coco / 'train' /
                                       f'{i // 5 + 1:012d}.png')
        assert item['gt_caption'] == captions['annotations'][i]['caption']
        assert isinstance(item['gt_caption'], str)
    assert dataset.metainfo['task'] == 'caption'


def test_test_mode_one_item_per_image_with_all_references(small_demo_coco):
    dataset = demo_dataset(small_demo_coco, test_mode=True)
    train_mode = demo_dataset(small_demo_coco, test_mode=False)
    assert len(dataset) == 6
    for i in range(len(dataset)):
        item = dataset.get_data_info(i)
        assert item['image_id'] == i + 1
        assert item['gt_caption'] == [
            train_mode.get_data_info(5 * i + k)['gt_caption'] for k in range(5)
        ]


def test_karpathy_layout_and_splits(tmp_path):
    ann_file = tmp_path / 'dataset_coco.json'
    write_karpathy(ann_file)
    for image in json.loads(ann_file.read_text())['images']:
        folder = tmp_path / 'coco' / image['filepath']
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image['filename']).touch()

    def load(split: str, test_mode: bool) -> list:
        dataset = CocoCaptionDataset(
            ann_file=str(ann_file),
            split=split,
            test_mode=test_mode,
            data_prefix=dict(img_path=str(tmp_path / 'coco')))
        return [dataset.get_data_info(i) for i in range(len(dataset))]

    train = load(
        'train', test_mode=False)  # train + restval; image 5 has no captions
    assert [(item['image_id'], item['gt_caption'])
            for item in train] == [(1, 'A dog.'), (1, 'A brown dog'),
                                   (3, 'Two dogs'), (3, 'Dogs play'),
                                   (3, 'Two dogs play')]
    assert train[0]['img_path'] == str(
        tmp_path / 'coco/train2014/COCO_train2014_000000000001.jpg')
    assert train[2]['img_path'] == str(
        tmp_path / 'coco/val2014/COCO_val2014_000000000003.jpg')
    assert [(item['image_id'], item['gt_caption'])
            for item in load('val', test_mode=True)
            ] == [(2, ['A cat.', 'A cat sleeps'])]
    assert [item['image_id'] for item in load('test', test_mode=True)] == [4]
    with pytest.raises(ValueError, match='needs split'):
        load(None, test_mode=False)
    with pytest.raises(ValueError, match='needs split'):
        load('restval', test_mode=False)


def test_split_is_refused_for_a_coco_json(small_demo_coco):
    with pytest.raises(ValueError, match='Karpathy layout only'):
        demo_dataset(small_demo_coco, test_mode=False, split='val')


@pytest.mark.parametrize(
    'content, message',
    [
        (None, 'caption annotation file not found'),
        ('{"images": [', 'not valid JSON'),
        (b'{"images": [], "annotations": [], "x": "\xff"}', 'not UTF-8 text'),
        ('[1, 2]', 'neither a COCO captions json'),
        ('{"images": [{"id": 1}], "annotations": [{"image_id": 1}]}',
         'malformed'),
        ('{"images": [{"id": 1, "file_name": "a.png"}], '
         '"annotations": [{"image_id": 2, "caption": "a"}]}', 'malformed'),
        # a Karpathy json needs the sentences of every image
        ('{"images": [{"cocoid": 1, "split": "train"}]}', "with 'sentences'"),
    ])
def test_bad_annotation_file(tmp_path, content, message):
    ann_file = tmp_path / 'captions.json'
    if isinstance(content, bytes):
        ann_file.write_bytes(content)
    elif content is not None:
        ann_file.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        CocoCaptionDataset(ann_file=str(ann_file))
    assert str(info.value).startswith(f'{ann_file}: ')


@pytest.mark.parametrize('resize', ['Resize', 'mmdet.Resize'])
def test_pipeline_from_config(small_demo_coco, resize):
    init_default_scope('visft_mm')
    pipeline = [
        dict(t, type=resize) if t['type'] == 'Resize' else t
        for t in CAPTION_PIPELINE
    ]
    for test_mode in (False, True):
        dataset = DATASETS.build(
            dict(
                type='CocoCaptionDataset',
                data_root=str(small_demo_coco),
                ann_file='annotations/captions_train.json',
                data_prefix=dict(img_path='train/'),
                pipeline=pipeline,
                test_mode=test_mode))
        packed = dataset[1]
        assert packed['inputs'].shape == (3, 256, 256)
        sample = packed['data_samples']
        assert isinstance(sample, DataSample)
        assert sample.gt_caption == dataset.get_data_info(1)['gt_caption']
        assert sample.image_id == dataset.get_data_info(1)['image_id']
        assert sample.ori_shape == (112, 112) and sample.img_shape == (256,
                                                                       256)


def run_vocab_tool(*args: str) -> subprocess.CompletedProcess:
    return run_script_in_process('tools/misc/build_caption_vocab.py', *args)


def test_vocab_tool_coco_layout(small_demo_coco, tmp_path):
    out = tmp_path / 'vocab.json'
    result = run_script(  # in a child process, as run
        'tools/misc/build_caption_vocab.py',
        str(small_demo_coco / 'annotations/captions_train.json'), str(out),
        '--min-word-freq', '1')
    assert result.returncode == 0, result.stderr
    # The demo writes the word map of its train captions with
    # min_word_freq=1: the same file.
    assert out.read_bytes() == (small_demo_coco /
                                'annotations/vocab.json').read_bytes()


def test_vocab_tool_karpathy_layout_reads_train_and_restval(tmp_path):
    ann_file, out = tmp_path / 'dataset_coco.json', tmp_path / 'vocab.json'
    write_karpathy(ann_file)
    result = run_vocab_tool(str(ann_file), str(out), '--min-word-freq', '1')
    assert result.returncode == 0, result.stderr
    # Counted over train + restval only: 'brown' (once) is dropped, and so is
    # 'cat', seen twice but only in val.
    assert list(json.loads(out.read_text())) == [
        'a', 'dog', 'two', 'dogs', 'play', '<unk>', '<start>', '<end>', '<pad>'
    ]
    assert len(WordVocabulary.load(str(out))) == 9
    assert result.stdout.strip() == f'9 entries from 2 images -> {out}'


@pytest.mark.parametrize('content', [None, 'not json', '{"images": 3}'])
def test_vocab_tool_bad_input(tmp_path, content):
    ann_file, out = tmp_path / 'captions.json', tmp_path / 'vocab.json'
    if content is not None:
        ann_file.write_text(content)
    result = run_vocab_tool(str(ann_file), str(out))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and str(
        ann_file) in lines[0]
    assert not out.exists()
