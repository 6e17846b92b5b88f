"""The released ViSFT caption head: the official word map is rebuilt exactly
from a Karpathy json; an official-layout state dict (random tensors of the
documented shapes) maps onto the official caption config's model, loads
strictly and computes the official teacher-forced word scores and attention
weights; the mapping refuses what it cannot place."""
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample
from official_layouts import random_caption as random_official

from visft_mm.checkpoints.io import CheckpointError
from visft_mm.checkpoints.official_heads import caption_state_dict
from visft_mm.datasets import WordVocabulary
from visft_mm.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / 'configs/_base_/models'
IN_CHANNELS = 24
DIMS = 384  # official attention, embedding and LSTM widths
DECODER = 'visft_heads.caption_decoder.'

# (split, [tokens of each sentence]) per image, in file order. First seen:
# a, cat, on, mat, dog, sofa, zebra, the. Counts: a 6, cat 6, sofa 6 (from a
# test image on), zebra 6 (in one 51-token caption, longer than the official
# max_len of 50), the 45 are kept (> 5); dog 5, on 4, mat 1 are not.
KARPATHY_IMAGES = [
    ('val', ['a cat on a mat', 'a dog']),
    ('test', ['sofa sofa sofa a cat']),
    ('train', ['cat on sofa dog dog', 'a a']),
    ('restval', ['on on cat sofa sofa']),
    ('train', [' '.join(['zebra'] * 6 + ['the'] * 45)]),
    ('test', ['cat cat dog dog']),
]
OFFICIAL_WORD_MAP = {
    'a': 1,
    'cat': 2,
    'sofa': 3,
    'zebra': 4,
    'the': 5,
    '<unk>': 6,
    '<start>': 7,
    '<end>': 8,
    '<pad>': 0,
}


def write_karpathy(path: Path) -> None:
    """A Karpathy-format json whose `raw` captions add words the `tokens` do
    not have, so a map made from the raw text differs."""
    images = [
        dict(
            filepath='val2014' if split != 'train' else 'train2014',
            filename=f'COCO_{i:012d}.jpg',
            split=split,
            cocoid=i,
            sentences=[
                dict(
                    raw=f'{tokens.upper()}, as seen here.',
                    tokens=tokens.split()) for tokens in sentences
            ]) for i, (split, sentences) in enumerate(KARPATHY_IMAGES)
    ]
    path.write_text(json.dumps(dict(dataset='coco', images=images)))


def run_vocab_tool(monkeypatch, *args: str) -> None:
    """tools/misc/build_caption_vocab.py with ``args``, in this process."""
    tool = ROOT / 'tools/misc/build_caption_vocab.py'
    monkeypatch.setattr(sys, 'argv', [str(tool), *args])
    runpy.run_path(str(tool), run_name='__main__')


@pytest.fixture
def word_map_file(tmp_path) -> Path:
    path = tmp_path / 'WORDMAP.json'
    path.write_text(json.dumps(OFFICIAL_WORD_MAP))
    return path


def test_official_word_map_is_reproduced_exactly(tmp_path, monkeypatch,
                                                 capsys):
    write_karpathy(tmp_path / 'dataset_coco.json')
    out = tmp_path / 'WORDMAP_rebuilt.json'
    run_vocab_tool(monkeypatch, '--official',
                   str(tmp_path / 'dataset_coco.json'), str(out))
    word_map = json.loads(out.read_text())
    # same ids, in the official file's order
    assert list(word_map.items()) == list(OFFICIAL_WORD_MAP.items())
    assert capsys.readouterr().out.strip() == (
        f'9 entries from 8 captions -> {out}')


def test_vocabulary_reads_the_official_map(word_map_file):
    vocab = WordVocabulary.load(str(word_map_file))
    assert (vocab.pad_id, vocab.unk_id, vocab.start_id, vocab.end_id) == (0, 6,
                                                                          7, 8)
    ids = vocab.encode('A zebra on the sofa.', max_len=50)
    assert ids == [7, 1, 4, 6, 5, 3, 8]
    assert vocab.decode(ids + [0, 0]) == 'a zebra the sofa'


def test_official_needs_a_karpathy_json(tmp_path, monkeypatch):
    coco = tmp_path / 'captions.json'
    coco.write_text(
        json.dumps(
            dict(
                images=[dict(id=1, file_name='1.jpg')],
                annotations=[dict(image_id=1, caption='a dog')])))
    out = tmp_path / 'WORDMAP.json'
    with pytest.raises(SystemExit) as info:
        run_vocab_tool(monkeypatch, '--official', str(coco), str(out))
    message = str(info.value.code)
    assert len(message.splitlines()) == 1
    assert message.startswith('error: --official') and str(coco) in message
    assert not out.exists()


# ---------------------------------------------------------------- the head


def official_caption_config(tmp_path: Path, word_map_file: Path):
    """caption_model of visft_caption.py with visft_caption_official.py
    merged in, as a config that has the caption task does it."""
    leaf = tmp_path / 'caption_official.py'
    bases = [
        str(MODELS_DIR / 'visft_caption.py'),
        str(MODELS_DIR / 'visft_caption_official.py')
    ]
    leaf.write_text(f'_base_ = {bases!r}\n'
                    'caption_model = _base_.caption_model_to_official\n')
    cfg = Config.fromfile(str(leaf)).caption_model
    cfg.head.update(
        in_channels=IN_CHANNELS,
        vocab_file=str(word_map_file),
        vocab_size=len(OFFICIAL_WORD_MAP))
    return cfg


def test_official_caption_config_differs_only_in_inputs_and_vocab_size(
        tmp_path, word_map_file):
    official = official_caption_config(tmp_path, word_map_file)
    assert official.head.vocab_size == len(OFFICIAL_WORD_MAP)
    plain = Config.fromfile(str(MODELS_DIR / 'visft_caption.py')).caption_model
    assert Config.fromfile(str(
        MODELS_DIR /
        'visft_caption_official.py')).caption_model_to_official.head == dict(
            vocab_size=9490)
    preprocessor = official.pop('data_preprocessor')
    assert preprocessor.mean == [123.675, 116.28, 103.53]
    assert preprocessor.std == [58.395, 57.12, 57.375]
    assert preprocessor.bgr_to_rgb
    plain.pop('data_preprocessor')
    for cfg in (official, plain):
        for key in ('in_channels', 'vocab_file', 'vocab_size'):
            cfg.head.pop(key, None)
    assert official == plain


def official_teacher_forcing(sd: dict, feat: torch.Tensor, ids: list):
    """The official DecoderWithAttention at batch 1 in eval mode: word scores
    (T-1, V) and attention weights (T-1, P) for the caption ``ids``."""

    def linear(name, x):
        return F.linear(x, sd[f'{DECODER}{name}.weight'],
                        sd[f'{DECODER}{name}.bias'])

    pixels = F.adaptive_avg_pool2d(feat, 14).permute(0, 2, 3, 1).flatten(1,
                                                                         2)[0]
    mean = pixels.mean(0)
    h, c = linear('init_h', mean), linear('init_c', mean)
    embeddings = sd[f'{DECODER}embedding.weight'][torch.tensor(ids)]
    scores, alphas = [], []
    for t in range(len(ids) - 1):
        energy = linear(
            'attention.full_att',
            F.relu(
                linear('attention.encoder_att', pixels) +
                linear('attention.decoder_att', h)))[:, 0]
        alpha = energy.softmax(0)
        context = torch.sigmoid(linear('f_beta',
                                       h)) * (pixels * alpha[:, None]).sum(0)
        gates = (
            F.linear(
                torch.cat([embeddings[t], context
                           ]), sd[f'{DECODER}decode_step.weight_ih'],
                sd[f'{DECODER}decode_step.bias_ih']) +
            F.linear(h, sd[f'{DECODER}decode_step.weight_hh'],
                     sd[f'{DECODER}decode_step.bias_hh']))
        i, f, g, o = gates.chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        scores.append(linear('fc', h))
        alphas.append(alpha)
    return torch.stack(scores), torch.stack(alphas)


def test_teacher_forcing_matches_the_official_head(tmp_path, word_map_file):
    official = random_official(IN_CHANNELS, len(OFFICIAL_WORD_MAP))
    init_default_scope('visft_mm')
    model = MODELS.build(official_caption_config(tmp_path, word_map_file))
    others = {  # keys of the other heads in the same file
        'visft_heads.segment_predictor.query_feat.weight':
        torch.zeros(100, 256),
        'det_losses.empty_weight': torch.ones(92)
    }
    model.load_state_dict(
        caption_state_dict({
            **official,
            **others
        }), strict=True)
    model.eval()
    caption = 'a zebra on the sofa'
    feat = torch.randn(
        1, IN_CHANNELS, 18, 18, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores, alphas = model((feat, ), [DataSample(gt_caption=caption)],
                               mode='tensor')
        ids = model.head.vocab.encode(caption)
        expected_scores, expected_alphas = official_teacher_forcing(
            official, feat, ids)
    assert scores.shape == (1, len(ids) - 1, len(OFFICIAL_WORD_MAP))
    assert alphas.shape == (1, len(ids) - 1, 196)
    torch.testing.assert_close(
        scores[0], expected_scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        alphas[0], expected_alphas, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('change,message', [
    (lambda sd: sd.update({f'{DECODER}extra.weight': torch.zeros(1)}),
     f'cannot place: {DECODER}extra.weight'),
    (lambda sd: sd.update({f'{DECODER}f_beta.bias': torch.zeros(DIMS)}),
     rf'{DECODER}f_beta.bias of shape \(384,\)'),
    (lambda sd: sd.pop(f'{DECODER}decode_step.bias_hh'),
     f'lacks {DECODER}decode_step.bias_hh'),
    (lambda sd: sd.pop(f'{DECODER}init_h.weight'),
     f'lacks {DECODER}init_h.weight'),
])
def test_mapping_refuses_what_it_cannot_place(change, message):
    official = random_official(IN_CHANNELS, 9)
    change(official)
    with pytest.raises(CheckpointError, match=message):
        caption_state_dict(official)
