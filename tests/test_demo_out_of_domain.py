"""The demo's out-of-domain test (visft_mm.demo.out_of_domain): shifted test
sets, zero-shot retrieval of a backbone file under the frozen pre-trained
towers, and the table make demo prints."""
import json
import os
import subprocess
import time

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import NARROW_VIT, ROOT, import_script

from visft_mm.checkpoints.io import CheckpointError, save_atomic
from visft_mm.datasets.caption_vocab import WordVocabulary
from visft_mm.demo.clip_pretrain import (CaptionedImages, load_captioned_split,
                                         load_clip, pretrain_clip,
                                         retrieval_recall, save_clip_towers)
from visft_mm.demo.demo_coco import (CHECKER_CELL_PX, COLORS,
                                     generate_demo_coco, rasterize,
                                     render_background)
from visft_mm.demo.out_of_domain import (SEED_OFFSET, SPLIT, TEST_SETS,
                                         evaluate_retrieval, make_test_sets)

IMG = 56


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A briefly pre-trained demo CLIP: its data root, model, backbone file
    and towers file."""
    root = tmp_path_factory.mktemp('ood')
    data_root = str(root / 'demo_coco')
    generate_demo_coco(data_root, num_train=16, num_val=4, img_size=IMG)
    model, _ = pretrain_clip(
        data_root, NARROW_VIT, img_size=IMG, iters=3, batch_size=8)
    backbone, towers = root / 'backbone.pth', root / 'towers.pth'
    save_atomic(model.backbone.state_dict(), backbone)
    save_clip_towers(model, NARROW_VIT, IMG, towers)
    return data_root, model, str(backbone), str(towers)


def vocab_of(data_root: str) -> WordVocabulary:
    return WordVocabulary.load(
        os.path.join(data_root, 'annotations', 'vocab.json'))


class FixedEmbeddings(torch.nn.Module):
    """Encoders that return given embeddings: of the images whose pixels hold
    their index, and of all captions."""

    def __init__(self, image_embeds, caption_embeds):
        super().__init__()
        self.image_embeds = torch.tensor(image_embeds, dtype=torch.float32)
        self.caption_embeds = torch.tensor(caption_embeds, dtype=torch.float32)

    def encode_images(self, images):
        return self.image_embeds[images[:, 0, 0, 0].long()]

    def encode_captions(self, tokens):
        return self.caption_embeds


def test_retrieval_recall_on_a_known_answer():
    # Image 0 is described by captions 0 and 1, image 1 by 1, image 2 by 2.
    described = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    data = CaptionedImages(
        images=torch.arange(3.).view(3, 1, 1, 1).expand(3, 3, 4, 4),
        captions=[],
        caption_texts=['a', 'b', 'c'],
        caption_tokens=torch.zeros(3, 2, dtype=torch.long),
        image_captions=described)
    # Every image's nearest caption describes it; caption 2's nearest image
    # is image 0 (a miss), its second nearest image 2.
    model = FixedEmbeddings([[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                            [[1, 0, 0], [0, 1, 0], [0.8, 0, 0.6]])
    recalls = retrieval_recall(model, data, topk=(1, 2), batch_size=2)
    assert recalls == pytest.approx({
        'i2t/Recall@1': 100,
        'i2t/Recall@2': 100,
        't2i/Recall@1': 200 / 3,
        't2i/Recall@2': 100,
    })


def test_towers_over_their_own_backbone_give_the_pretrained_model(pretrained):
    data_root, model, backbone, towers = pretrained
    vocab = vocab_of(data_root)
    loaded = load_clip(towers, backbone, vocab)
    data = load_captioned_split(data_root, 'val', IMG, vocab)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.encode_images(data.images),
            model.encode_images(data.images),
            rtol=0,
            atol=0)
        torch.testing.assert_close(
            loaded.encode_captions(data.caption_tokens),
            model.encode_captions(data.caption_tokens),
            rtol=0,
            atol=0)


def test_towers_refuse_what_does_not_fit(pretrained, tmp_path):
    data_root, _, backbone, towers = pretrained
    vocab = vocab_of(data_root)
    # a backbone of another width
    wide = dict(NARROW_VIT, embed_dims=48, feedforward_channels=96)
    other_model, _ = pretrain_clip(
        data_root, wide, img_size=IMG, iters=1, batch_size=8)
    other_backbone = tmp_path / 'wide.pth'
    save_atomic(other_model.backbone.state_dict(), other_backbone)
    with pytest.raises(CheckpointError, match='wide.pth'):
        load_clip(towers, other_backbone, vocab)
    # a vocabulary of another size
    smaller = WordVocabulary.build(['a red circle'], min_word_freq=1)
    with pytest.raises(
            CheckpointError, match='caption_encoder.word_embed.weight'):
        load_clip(towers, backbone, smaller)
    # a backbone file given as the towers
    with pytest.raises(CheckpointError, match='not a demo CLIP towers file'):
        load_clip(backbone, backbone, vocab)


def color_edges(image: np.ndarray) -> float:
    """Share of horizontally adjacent pixel pairs whose colors differ by more
    than 40 (sum over the channels), far beyond the noise."""
    return float((np.abs(np.diff(image, axis=1)).sum(-1) > 40).mean())


@pytest.mark.parametrize('seed', range(4))
def test_checker_background_alternates_and_gradient_is_smooth(seed):
    assert color_edges(
        render_background(np.random.default_rng(seed), 112, 'gradient')) < 1e-3
    # an edge at every cell border: one pixel pair in each cell's width
    edges = color_edges(
        render_background(np.random.default_rng(seed), 112, 'checker'))
    assert 1 / (CHECKER_CELL_PX[1] + 2) < edges < 1 / (CHECKER_CELL_PX[0] - 1)
    with pytest.raises(ValueError, match='unknown background'):
        render_background(np.random.default_rng(seed), 112, 'stripes')


def test_test_sets_are_new_scenes_with_their_backgrounds(tmp_path):
    roots = make_test_sets(str(tmp_path), seed=1, num_images=3, img_size=IMG)
    assert set(roots) == set(TEST_SETS)
    for name, data_root in roots.items():
        # only a test split, read with the demo's own vocabulary
        assert sorted(os.listdir(data_root)) == ['annotations', SPLIT]
        with open(
                os.path.join(data_root, 'annotations',
                             f'instances_{SPLIT}.json')) as f:
            instances = json.load(f)
        assert instances['info']['background'] == TEST_SETS[name]
        assert instances['info']['seed'] == SEED_OFFSET + 1
        # every object is painted exactly through its mask
        for annotation in instances['annotations']:
            image = next(i for i in instances['images']
                         if i['id'] == annotation['image_id'])
            pixels = np.asarray(
                Image.open(os.path.join(data_root, SPLIT, image['file_name'])))
            mask = rasterize(annotation['segmentation'][0], IMG)
            assert (pixels[mask] == COLORS[annotation['color']]).all()
    # the sets of another seed are other scenes; present sets are kept
    other = make_test_sets(str(tmp_path), seed=2, num_images=3, img_size=IMG)
    first = os.path.join(roots['held-out'], SPLIT, '000000000001.png')
    assert not np.array_equal(
        np.asarray(Image.open(first)),
        np.asarray(
            Image.open(
                os.path.join(other['held-out'], SPLIT, '000000000001.png'))))
    modified = os.path.getmtime(first)
    make_test_sets(str(tmp_path), seed=1, num_images=3, img_size=IMG)
    assert os.path.getmtime(first) == modified


def test_evaluation_scores_the_backbone_file_under_the_frozen_towers(
        pretrained, tmp_path):
    data_root, model, backbone, towers = pretrained
    vocab = vocab_of(data_root)
    roots = make_test_sets(
        str(tmp_path / 'sets'), seed=0, num_images=6, img_size=IMG)
    # a changed backbone file, as a merged LoRA makes one
    changed = {
        key:
        tensor + 0.05 * torch.randn_like(tensor)
        if key.endswith('qkv.weight') else tensor
        for key, tensor in model.backbone.state_dict().items()
    }
    changed_file = tmp_path / 'merged.pth'
    save_atomic(changed, changed_file)
    for backbone_file, weights in ((backbone, None), (changed_file, changed)):
        expected_model = load_clip(towers, backbone, vocab)
        if weights is not None:
            expected_model.backbone.load_state_dict(weights)
        expected = {}
        for name, data_root_of_set in roots.items():
            data = load_captioned_split(data_root_of_set, SPLIT, IMG, vocab)
            expected.update({
                f'{name}/{key}': value
                for key, value in retrieval_recall(expected_model,
                                                   data).items()
            })
        recalls = evaluate_retrieval(
            towers, str(backbone_file), roots,
            os.path.join(data_root, 'annotations', 'vocab.json'))
        assert recalls == expected
        assert set(recalls) == {
            f'{name}/{direction}/Recall@1'
            for name in TEST_SETS
            for direction in ('i2t', 't2i')
        }


def test_demo_table_shows_mean_and_spread_over_seeds(capsys):
    run_demo = import_script(ROOT / 'tools/misc/run_demo.py')
    runs = [{'m': 1.0}, {'m': 2.0}, {'m': 3.0}]
    run_demo.print_table('title', [('metric', 'm')], [('one run', runs[:1]),
                                                      ('three runs', runs)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        'title',
        ' ' * 12 + f'{"metric":>17}',
        f'{"one run":<12}{"1.000":>17}',
        f'{"three runs":<12}{"2.000 ± 1.000":>17}',
    ]


def test_demo_runs_chains_side_by_side_one_thread_each(capsys):
    run_demo = import_script(ROOT / 'tools/misc/run_demo.py')
    threads = 'import os; print(os.environ.get("OMP_NUM_THREADS"))'
    run_demo.run_together([[('a', ('-c', threads)),
                            ('b', ('-c', 'print("after a")'))],
                           [('c', ('-c', 'print("beside")'))]],
                          log_only=False)
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == ['[a] 1', '[b] after a', '[c] beside']
    assert lines.index('[a] 1') < lines.index('[b] after a')
    # alone, a script keeps the default threads and shows no prefix
    run_demo.run('-c', threads, log_only=False)
    assert capsys.readouterr().out.splitlines() == [
        os.environ.get('OMP_NUM_THREADS', 'None')
    ]
    # a failure ends its chain, lets the others finish and is raised
    with pytest.raises(subprocess.CalledProcessError):
        run_demo.run_together([[('fails', ('-c', 'raise SystemExit(3)')),
                                ('skipped', ('-c', 'print("never")'))],
                               [('other', ('-c', 'print("done")'))]],
                              log_only=False)
    assert capsys.readouterr().out.splitlines() == ['[other] done']


def test_demo_works_here_while_a_script_runs(tmp_path, capsys):
    """``meanwhile`` runs while the script does (each waits for a file the
    other writes), and its result comes back after the script has ended; a
    failed script is still raised."""
    run_demo = import_script(ROOT / 'tools/misc/run_demo.py')
    started, answered = tmp_path / 'started', tmp_path / 'answered'
    script = ('import pathlib, time; '
              f'pathlib.Path({str(started)!r}).touch(); '
              f'answered = pathlib.Path({str(answered)!r}); '
              '[time.sleep(0.05) for _ in range(200) '
              'if not answered.exists()]; '
              'print(answered.exists())')

    def meanwhile():
        for _ in range(200):
            if started.exists():
                answered.touch()
                return 'drawn'
            time.sleep(0.05)
        return 'the script did not start'

    assert run_demo.run_together([[('script', ('-c', script))]],
                                 log_only=False,
                                 meanwhile=meanwhile) == 'drawn'
    assert capsys.readouterr().out.splitlines() == ['True']
    with pytest.raises(subprocess.CalledProcessError):
        run_demo.run_together([[('fails', ('-c', 'raise SystemExit(3)'))]],
                              meanwhile=lambda: 'done')


def test_demo_reads_the_last_validation_of_a_run(tmp_path):
    run_demo = import_script(ROOT / 'tools/misc/run_demo.py')
    records = [
        {
            'caption/CIDEr': 0.5,
            'coco/bbox_mAP': 0.1,
            'time': 1.0,
            'step': 100
        },
        {
            'loss': 1.0,
            'detection.loss_cls': 0.5,
            'lr': 1e-3,
            'step': 120
        },
        {
            'caption/CIDEr': 0.75,
            'coco/bbox_mAP': 0.25,
            'step': 300
        },
        {
            'loss': 0.5,
            'lr': 1e-4,
            'step': 300
        },
    ]
    vis_data = tmp_path / '20260101_000000' / 'vis_data'
    vis_data.mkdir(parents=True)
    (vis_data / 'scalars.json').write_text(''.join(
        json.dumps(record) + '\n' for record in records))
    assert run_demo.last_validation(tmp_path) == {
        'caption/CIDEr': 0.75,
        'coco/bbox_mAP': 0.25
    }
    # a single-task run's metrics get their task's prefix once
    assert run_demo.last_validation(tmp_path, 'caption') == {
        'caption/CIDEr': 0.75,
        'caption/coco/bbox_mAP': 0.25
    }


def test_demo_names_the_changes_beyond_two_standard_errors():
    run_demo = import_script(ROOT / 'tools/misc/run_demo.py')
    columns = [('steady', 's'), ('noisy', 'n'), ('none', 'z')]
    differences = [{
        's': 1.0,
        'n': 3.0,
        'z': 0.0
    }, {
        's': 1.2,
        'n': -2.0,
        'z': 0.0
    }, {
        's': 0.8,
        'n': 0.5,
        'z': 0.0
    }]
    assert run_demo.clear_changes(differences, columns) == ['steady (+1.000)']
    assert run_demo.clear_changes(differences[:1], columns) == []
