"""WordVocabulary: the sgrvinod word-map layout, tokenisation and round
trips."""
import json

import pytest

from visft_mm.datasets import WordVocabulary
from visft_mm.datasets.caption_vocab import tokenize

CAPTIONS = [
    'A dog runs on the grass.',
    'The dog, a brown one, sleeps.',
    'A cat and a dog.',
    'Two birds fly.',
]


def test_tokenize_lowercases_and_deletes_punctuation():
    assert tokenize("  A man's T-shirt, red.  ") == [
        'a', 'mans', 'tshirt', 'red'
    ]


def test_build_keeps_frequent_words_in_first_appearance_order():
    vocab = WordVocabulary.build(CAPTIONS, min_word_freq=1)
    # counts: a 5, dog 3, the 2; every other word once (not > 1)
    assert vocab.word_to_id == {
        'a': 1,
        'dog': 2,
        'the': 3,
        '<unk>': 4,
        '<start>': 5,
        '<end>': 6,
        '<pad>': 0
    }
    assert len(vocab) == 7
    assert (vocab.pad_id, vocab.unk_id, vocab.start_id, vocab.end_id) == (0, 4,
                                                                          5, 6)


def test_min_word_freq_is_strict():
    vocab = WordVocabulary.build(CAPTIONS, min_word_freq=3)
    assert [w for w in vocab.word_to_id if not w.startswith('<')] == ['a']


def test_encode_decode_round_trip():
    vocab = WordVocabulary.build(CAPTIONS, min_word_freq=0)
    ids = vocab.encode('The dog sleeps.', max_len=50)
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    assert ids[1:-1] == [vocab.word_to_id[w] for w in ('the', 'dog', 'sleeps')]
    assert vocab.decode(ids) == 'the dog sleeps'
    assert vocab.decode(
        ids + [vocab.word_to_id['cat'], vocab.pad_id]) == 'the dog sleeps'


def test_encode_truncates_to_max_len_words():
    vocab = WordVocabulary.build(CAPTIONS, min_word_freq=0)
    ids = vocab.encode('a dog runs on the grass', max_len=3)
    assert len(ids) == 5
    assert vocab.decode(ids) == 'a dog runs'


def test_unknown_words_become_unk_and_decode_skips_specials():
    vocab = WordVocabulary.build(CAPTIONS, min_word_freq=1)
    ids = vocab.encode('a zebra and the dog', max_len=50)
    assert ids == [
        vocab.start_id, 1, vocab.unk_id, vocab.unk_id, 3, 2, vocab.end_id
    ]
    assert vocab.decode(ids) == 'a the dog'


def test_save_load_is_the_flat_wordmap_json(tmp_path):
    vocab = WordVocabulary.build(CAPTIONS, min_word_freq=0)
    path = tmp_path / 'WORDMAP_toy.json'
    vocab.save(str(path))
    with open(path) as f:
        word_map = json.load(f)
    assert word_map == vocab.word_to_id
    assert all(isinstance(idx, int) for idx in word_map.values())
    loaded = WordVocabulary.load(str(path))
    assert loaded.word_to_id == vocab.word_to_id
    assert loaded.decode(vocab.encode('two birds fly', 50)) == 'two birds fly'


def test_rejects_word_map_without_specials_or_nonzero_pad():
    with pytest.raises(ValueError):
        WordVocabulary({'a': 1, '<pad>': 0})
    with pytest.raises(ValueError):
        WordVocabulary({
            'a': 0,
            '<unk>': 2,
            '<start>': 3,
            '<end>': 4,
            '<pad>': 1
        })
