"""ShowAttendTellHead: official parameter names, the loss against the official
sorted/packed computation, overfitting two captions, and beam search."""
import itertools
import math
from typing import List

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from visft_mm.datasets import WordVocabulary
from visft_mm.models import ShowAttendTellHead
from visft_mm.registry import MODELS

IN_CHANNELS, DIM = 16, 32
CAPTIONS = ['a dog runs on the grass', 'two cats sit on a red sofa', 'a bird']


def official_shapes(vocab_size: int) -> dict:
    """Parameter name -> shape in the official DecoderWithAttention."""
    C, A, E, D, V = IN_CHANNELS, DIM, DIM, DIM, vocab_size
    return {
        'attention.encoder_att.weight': (A, C),
        'attention.encoder_att.bias': (A, ),
        'attention.decoder_att.weight': (A, D),
        'attention.decoder_att.bias': (A, ),
        'attention.full_att.weight': (1, A),
        'attention.full_att.bias': (1, ),
        'embedding.weight': (V, E),
        'decode_step.weight_ih': (4 * D, E + C),
        'decode_step.weight_hh': (4 * D, D),
        'decode_step.bias_ih': (4 * D, ),
        'decode_step.bias_hh': (4 * D, ),
        'init_h.weight': (D, C),
        'init_h.bias': (D, ),
        'init_c.weight': (D, C),
        'init_c.bias': (D, ),
        'f_beta.weight': (C, D),
        'f_beta.bias': (C, ),
        'fc.weight': (V, D),
        'fc.bias': (V, ),
    }


def make_head(vocab: WordVocabulary, **kwargs) -> ShowAttendTellHead:
    cfg = dict(
        in_channels=IN_CHANNELS,
        vocab=vocab,
        attention_dim=DIM,
        embed_dim=DIM,
        decoder_dim=DIM)
    cfg.update(kwargs)
    return ShowAttendTellHead(**cfg)


def samples_for(captions) -> List[DataSample]:
    return [DataSample(gt_caption=caption) for caption in captions]


@pytest.fixture
def vocab() -> WordVocabulary:
    return WordVocabulary.build(CAPTIONS, min_word_freq=0)


def test_parameter_names_and_shapes_are_the_official_ones(vocab):
    head = make_head(vocab)
    shapes = {name: tuple(t.shape) for name, t in head.state_dict().items()}
    assert shapes == official_shapes(len(vocab))


def test_official_initialisation(vocab):
    head = make_head(vocab)
    assert head.embedding.weight.abs().max() <= 0.1
    assert head.fc.weight.abs().max() <= 0.1
    assert torch.all(head.fc.bias == 0)


def test_builds_from_registry_with_a_wordmap_file(vocab, tmp_path):
    path = str(tmp_path / 'WORDMAP_toy.json')
    vocab.save(path)
    head = MODELS.build(
        dict(
            type='ShowAttendTellHead',
            in_channels=IN_CHANNELS,
            vocab_file=path,
            vocab_size=len(vocab)))
    assert head.fc.out_features == len(vocab)
    with pytest.raises(ValueError):
        ShowAttendTellHead(
            in_channels=IN_CHANNELS, vocab_file=path, vocab_size=9490)
    with pytest.raises(ValueError):
        ShowAttendTellHead(in_channels=IN_CHANNELS)


def test_loss_has_both_finite_terms_and_gradients(vocab):
    torch.manual_seed(0)
    head = make_head(vocab)
    feats = (torch.randn(3, IN_CHANNELS, 5, 7), )
    losses = head.loss(
        feats,
        samples_for([CAPTIONS[0], [CAPTIONS[1], CAPTIONS[2]], CAPTIONS[2]]))
    assert {'loss_caption', 'loss_caption_attn'} <= set(losses)
    for name in ('loss_caption', 'loss_caption_attn'):
        assert losses[name].dim() == 0 and torch.isfinite(losses[name])
        assert losses[name] > 0
    assert not losses['caption_top5_acc'].requires_grad
    (losses['loss_caption'] + losses['loss_caption_attn']).backward()
    assert head.decode_step.weight_ih.grad.abs().sum() > 0
    assert head.attention.full_att.weight.grad.abs().sum() > 0


def official_losses(head: ShowAttendTellHead, feats, captions,
                    caption_lengths):
    """The ViSFT/sgrvinod computation: sort by length, shrink the batch at each
    step, pack scores and targets with pack_padded_sequence."""
    encoder_out = head.adaptive_pool(feats[-1]).permute(0, 2, 3, 1)
    batch_size, encoder_dim = encoder_out.size(0), encoder_out.size(-1)
    encoder_out = encoder_out.reshape(batch_size, -1, encoder_dim)
    caption_lengths, sort_ind = caption_lengths.sort(dim=0, descending=True)
    encoder_out, captions = encoder_out[sort_ind], captions[sort_ind]
    embeddings = head.embedding(captions)
    mean_encoder_out = encoder_out.mean(dim=1)
    h, c = head.init_h(mean_encoder_out), head.init_c(mean_encoder_out)
    decode_lengths = (caption_lengths - 1).tolist()
    predictions = torch.zeros(batch_size, max(decode_lengths),
                              head.fc.out_features)
    alphas = torch.zeros(batch_size, max(decode_lengths), encoder_out.size(1))
    att = head.attention
    for t in range(max(decode_lengths)):
        bt = sum(length > t for length in decode_lengths)
        energy = att.full_att(
            F.relu(
                att.encoder_att(encoder_out[:bt]) +
                att.decoder_att(h[:bt]).unsqueeze(1))).squeeze(2)
        alpha = energy.softmax(dim=1)
        context = (encoder_out[:bt] * alpha.unsqueeze(2)).sum(dim=1)
        context = torch.sigmoid(head.f_beta(h[:bt])) * context
        h, c = head.decode_step(
            torch.cat([embeddings[:bt, t], context], dim=1), (h[:bt], c[:bt]))
        predictions[:bt, t] = head.fc(h)
        alphas[:bt, t] = alpha
    scores = pack_padded_sequence(
        predictions, decode_lengths, batch_first=True).data
    targets = pack_padded_sequence(
        captions[:, 1:], decode_lengths, batch_first=True).data
    return F.cross_entropy(scores,
                           targets), ((1. - alphas.sum(dim=1))**2).mean()


# alpha_c as the configs set it, and a value where leaving it out shows.
@pytest.mark.parametrize('alpha_c', [1.0, 0.25])
def test_masked_loss_equals_the_official_packed_loss(vocab, alpha_c):
    torch.manual_seed(0)
    head = make_head(
        vocab, alpha_c=alpha_c).eval()  # no dropout, so both are deterministic
    feats = (torch.randn(3, IN_CHANNELS, 6, 6), )
    captions = [CAPTIONS[2], CAPTIONS[0], CAPTIONS[1]]  # unsorted lengths
    encoded = [torch.tensor(vocab.encode(caption, 50)) for caption in captions]
    padded = pad_sequence(
        encoded, batch_first=True, padding_value=vocab.pad_id)
    lengths = torch.tensor([len(ids) for ids in encoded])

    ours = head.loss(feats, samples_for(captions))
    reference_ce, reference_attn = official_losses(head, feats, padded,
                                                   lengths)
    torch.testing.assert_close(ours['loss_caption'], reference_ce)
    torch.testing.assert_close(ours['loss_caption_attn'],
                               alpha_c * reference_attn)


def test_overfits_two_captions_and_reproduces_them(vocab):
    torch.manual_seed(0)
    captions = CAPTIONS[:2]
    # 3x3 pixels, about one per decoding step, so the attention regulariser
    # (1 - attention summed over steps) ** 2 can approach 0 as well
    head = make_head(vocab, encoded_size=3, max_decode_len=12)
    feats = (torch.randn(2, IN_CHANNELS, 4, 4), )
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    history = []
    for _ in range(60):
        losses = head.loss(feats, samples_for(captions))
        total = losses['loss_caption'] + losses['loss_caption_attn']
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append((losses['loss_caption'].item(), total.item()))
    assert history[-1][0] < 0.3 * history[0][0]
    assert history[-1][1] < 0.3 * history[0][1]

    head.eval()
    for beam_size in (1, 3):
        predicted = [
            vocab.decode(ids)
            for ids in head.generate(feats, beam_size=beam_size)
        ]
        assert predicted == captions
    results = head.predict(feats, samples_for(captions))
    assert [sample.pred_caption for sample in results] == captions


# A bigram language model over the words a, b, c, d: the next-word
# distribution depends only on the previous word. The best caption is 'b'
# (0.45 * 0.8 = 0.36), but greedy decoding picks 'a' (0.5 > 0.45) and ends
# with 'a c' (0.5 * 0.6 = 0.30).
BIGRAM = {
    '<start>': {
        'a': 0.5,
        'b': 0.45,
        'c': 0.05
    },
    'a': {
        'c': 0.6,
        'd': 0.4
    },
    'b': {
        '<end>': 0.8,
        'c': 0.2
    },
    'c': {
        '<end>': 1.0
    },
    'd': {
        '<end>': 0.9,
        'a': 0.1
    },
}
IMPOSSIBLE = -30.  # logit of every transition a table leaves out


def bigram_log_probs(vocab: WordVocabulary, table: dict) -> torch.Tensor:
    logits = torch.full((len(vocab), len(vocab)), IMPOSSIBLE)
    for previous, successors in table.items():
        for word, prob in successors.items():
            logits[vocab.word_to_id[previous],
                   vocab.word_to_id[word]] = math.log(prob)
    return logits.log_softmax(dim=1)


def use_bigram_steps(head, monkeypatch, log_probs):

    def step(pixels, projected_pixels, words, h, c):
        return log_probs[words], h, c, pixels.new_zeros(pixels.shape[:2])

    monkeypatch.setattr(head, 'step', step)


def caption_log_prob(vocab, log_probs, words: List[str]) -> float:
    ids = [vocab.start_id] + [vocab.word_to_id[w]
                              for w in words] + [vocab.end_id]
    return sum(log_probs[p, n].item() for p, n in zip(ids, ids[1:]))


def test_beam_search_finds_the_best_caption_greedy_misses(monkeypatch):
    vocab = WordVocabulary.build(['a b c d'], min_word_freq=0)
    log_probs = bigram_log_probs(vocab, BIGRAM)
    head = make_head(vocab, max_decode_len=6).eval()
    use_bigram_steps(head, monkeypatch, log_probs)
    feats = (torch.randn(1, IN_CHANNELS, 4, 4), )

    # exhaustive search over every caption that ends within max_decode_len
    # steps
    candidates = [
        list(words) for length in range(6)
        for words in itertools.product('abcd', repeat=length)
    ]
    best = max(
        candidates,
        key=lambda words: caption_log_prob(vocab, log_probs, words))
    assert best == ['b']

    greedy, ids = [], vocab.start_id
    while ids != vocab.end_id:
        ids = int(log_probs[ids].argmax())
        greedy.append(ids)
    assert vocab.decode(greedy) == 'a c'

    assert vocab.decode(head.generate(feats, beam_size=2)[0]) == 'b'
    assert vocab.decode(head.generate(feats, beam_size=4)[0]) == 'b'
    assert vocab.decode(head.generate(feats, beam_size=1)[0]) == 'a c'


@pytest.mark.parametrize('beam_size', [1, 3])
def test_caption_that_never_ends_is_cut_at_max_decode_len(
        monkeypatch, beam_size):
    vocab = WordVocabulary.build(['a b'], min_word_freq=0)
    log_probs = bigram_log_probs(vocab, {
        '<start>': {
            'a': 1.0
        },
        'a': {
            'a': 0.9,
            'b': 0.1
        },
        'b': {
            'a': 1.0
        }
    })
    head = make_head(vocab, max_decode_len=5).eval()
    use_bigram_steps(head, monkeypatch, log_probs)
    ids = head.generate((torch.randn(1, IN_CHANNELS, 4, 4), ),
                        beam_size=beam_size)[0]
    assert vocab.decode(ids) == 'a a a a a'


def test_beam_size_one_is_greedy_on_a_random_head(vocab):
    torch.manual_seed(1)
    head = make_head(vocab, max_decode_len=8).eval()
    feats = (torch.randn(4, IN_CHANNELS, 5, 5), )
    pixels = head.encode_image(feats)
    projected = head.attention.encoder_att(pixels)
    h, c = head.init_state(pixels)
    words = torch.full((4, ), vocab.start_id)
    greedy = [[] for _ in range(4)]
    with torch.no_grad():
        for _ in range(8):
            logits, h, c, _ = head.step(pixels, projected, words, h, c)
            words = logits.argmax(dim=1)
            for caption, word in zip(greedy, words.tolist()):
                caption.append(word)
    expected = []
    for caption in greedy:
        ended = vocab.end_id in caption
        expected.append(
            caption[:caption.index(vocab.end_id)] if ended else caption)
    assert head.generate(feats, beam_size=1) == expected
