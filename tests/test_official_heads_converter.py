"""tools/model_converters/official_heads2visft.py: released head files (random
tensors in their layout, at a tiny ViT width) become one checkpoint that the
official-heads stage-2 config's ViSFT loads strictly, each head from its own
file; EVA-ViT-G and EVA-ViT-E heads are told apart; any file that does not fit
is one error line and no output."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from official_layouts import (SEG_ALIASES, SEG_PREDICTOR, random_caption,
                              released_file)
from tiny import (ROOT, TINY_VIT, run_script, run_script_in_process,
                  with_tiny_vit)

from visft_mm.checkpoints.io import CheckpointError, read_checkpoint
from visft_mm.checkpoints.official_heads import (TASK_STATE_DICTS,
                                                 convert_released_heads)
from visft_mm.datasets import WordVocabulary
from visft_mm.models import EVAViT
from visft_mm.registry import MODELS

TOOL = 'tools/model_converters/official_heads2visft.py'
CONFIG = ROOT / 'configs/visft/eva_1b_stage2_official-heads.py'
WIDTH = TINY_VIT['embed_dims']
FLAGS = dict(
    detection='--detection', segmentation='--segment', caption='--caption')


@pytest.fixture(scope='module')
def vocab_file(tmp_path_factory) -> Path:
    """A word map of 9 entries (the head's size comes from the file)."""
    path = tmp_path_factory.mktemp('vocab') / 'WORDMAP.json'
    WordVocabulary.build_from_tokens([['a', 'cat', 'on', 'the', 'mat']],
                                     min_word_freq=0).save(str(path))
    return path


@pytest.fixture(scope='module')
def released(tmp_path_factory, vocab_file) -> dict:
    """Task -> (path, tensors) of a released file of each task."""
    folder = tmp_path_factory.mktemp('released')
    vocab = len(WordVocabulary.load(str(vocab_file)))
    files = {}
    for seed, task in enumerate(FLAGS):
        official = released_file(task, WIDTH, vocab, seed=seed)
        path = folder / f'eva_t_{FLAGS[task][2:]}_heads.ckpt'
        torch.save(official, path)
        files[task] = (path, official)
    return files


def stage2_model(vocab_file: Path, task_checkpoints: dict):
    """The official-heads stage-2 config's ViSFT on the tiny ViT, loading
    its tasks from ``task_checkpoints``."""
    model = with_tiny_vit(
        Config.fromfile(str(CONFIG)).model,
        vocab_file.parent,
        vocab_file=str(vocab_file))
    model.task_checkpoints = task_checkpoints
    init_default_scope('visft_mm')
    visft = MODELS.build(model)
    visft.init_weights()
    return visft


def flags(released: dict, *tasks: str) -> list:
    return [arg for task in tasks for arg in (FLAGS[task], released[task][0])]


@pytest.fixture(scope='module')
def converted(released, tmp_path_factory):
    """The tool, in a child process, on the three files: (output, log)."""
    out = tmp_path_factory.mktemp('converted') / 'heads.pth'
    result = run_script(TOOL, *flags(released, *FLAGS), out)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_the_stage2_config_loads_every_head_from_its_own_file(
        converted, released, vocab_file):
    """Each file holds every head, only its own trained: each task equals the
    mapping of its own file."""
    out, _ = converted
    visft = stage2_model(vocab_file, {task: str(out) for task in FLAGS})
    for task, (_, official) in released.items():
        expected = TASK_STATE_DICTS[task](official)
        loaded = visft.tasks[task].state_dict()
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    meta = read_checkpoint(out).meta
    assert meta['official_heads'] == {
        task: str(path)
        for task, (path, _) in released.items()
    }
    assert meta['vit_width'] == WIDTH and meta['backbone_arch'] is None


def test_the_log_names_what_it_left_out(converted):
    log = converted[1]
    for line in (
            'detection: ', 'segmentation: ', 'caption: ',
            '  left out det_losses.empty_weight: the criterion',
            '  left out visft_heads.segment_head.* (284): the same tensors '
            'under their other names (checked equal)',
            '  left out visft_heads.caption_decoder.* (19): the caption head,'
            ' untrained in a detection file',
            f'backbone: ViT width {WIDTH}, arch none released'):
        assert line in log


@pytest.mark.parametrize('width,arch', [(1408, 'eva-g'), (1792, 'eva-e')])
def test_backbone_arch_comes_from_the_widths(width, arch, tmp_path):
    path = tmp_path / 'caption.ckpt'
    torch.save(random_caption(width, 9), path)
    heads = convert_released_heads({'caption': path})
    assert (heads.vit_width, heads.backbone_arch) == (width, arch)


def test_heads_of_different_widths_are_refused(released, tmp_path):
    wider = tmp_path / 'caption.ckpt'
    torch.save(random_caption(WIDTH + 16, 9), wider)
    with pytest.raises(
            CheckpointError,
            match=f'different widths: detection '
            f'{WIDTH}, caption {WIDTH + 16}'):
        convert_released_heads({
            'detection': released['detection'][0],
            'caption': wider
        })


@pytest.mark.parametrize('task', list(FLAGS))
def test_one_file_gives_its_task_alone(task, released, converted, tmp_path):
    out = tmp_path / 'heads.pth'
    result = run_script_in_process(TOOL, *flags(released, task), out)
    assert result.returncode == 0, result.stderr
    assert f'tensors of tasks {task})' in result.stdout
    alone = read_checkpoint(out).state_dict
    together = read_checkpoint(converted[0]).state_dict
    assert alone.keys() == {
        key
        for key in together if key.startswith(f'tasks.{task}.')
    }
    assert all(torch.equal(v, together[k]) for k, v in alone.items())


def truncated(released, folder):
    data = released['detection'][0].read_bytes()
    (folder / 'in.ckpt').write_bytes(data[:len(data) // 2])
    return ['--detection', folder / 'in.ckpt'], 'cannot read the checkpoint'


def plain_backbone(released, folder):
    vit = EVAViT(arch=TINY_VIT, pretrain_img_size=56)
    torch.save(vit.state_dict(), folder / 'in.ckpt')
    return ['--detection', folder / 'in.ckpt'], 'not an official detection'


def caption_file_as_detection(released, folder):
    return [
        '--detection', released['caption'][0]
    ], ('its detection head is as initialised (the tensors that start at '
        'zero still are), so it is no released detection file; it looks '
        'like a caption file')


def with_change(task, change, message):

    def make(released, folder):
        official = dict(released[task][1])
        change(official)
        torch.save(official, folder / 'in.ckpt')
        return [FLAGS[task], folder / 'in.ckpt'], message

    return make


UNKNOWN = ('visft_heads.transformer.decoders.detection.detection_vg.layers.0.'
           'linear1.weight')
OTHER_QUERIES = SEG_ALIASES[SEG_PREDICTOR] + 'query_feat.weight'
BAD_INPUTS = dict(
    truncated=truncated,
    plain_backbone=plain_backbone,
    caption_file_as_detection=caption_file_as_detection,
    unknown_key=with_change(
        'detection', lambda sd: sd.update({UNKNOWN: torch.zeros(1024, 256)}),
        f'unknown keys (1): {UNKNOWN}'),
    unknown_segmentation_key=with_change(
        'segmentation',
        lambda sd: sd.update({SEG_PREDICTOR + 'extra.weight': torch.zeros(1)}),
        f'cannot place: {SEG_PREDICTOR}extra.weight'),
    wrong_shape=with_change(
        'caption', lambda sd: sd.update(
            {'visft_heads.caption_decoder.f_beta.bias': torch.zeros(384)}),
        r'f_beta.bias of shape (384,)'),
    alias_trees_differ=with_change(
        'segmentation',
        lambda sd: sd.update({OTHER_QUERIES: sd[OTHER_QUERIES] + 1}),
        f'two different tensors for {SEG_PREDICTOR}query_feat.weight: '
        f'{SEG_PREDICTOR}query_feat.weight and {OTHER_QUERIES}'),
)


@pytest.mark.parametrize('make', BAD_INPUTS.values(), ids=list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_no_output(make, released, tmp_path):
    args, message = make(released, tmp_path)
    out = tmp_path / 'out' / 'heads.pth'
    result = run_script_in_process(TOOL, *args, out)
    stderr = result.stderr
    assert result.returncode == 1
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f'error: {args[1]}: ') and message in stderr
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_no_file_given_is_a_usage_error(tmp_path):
    result = run_script_in_process(TOOL, tmp_path / 'heads.pth')
    assert result.returncode == 2
    assert ('give at least one of --detection, --segment, --caption'
            in result.stderr)
    assert not (tmp_path / 'heads.pth').exists()
