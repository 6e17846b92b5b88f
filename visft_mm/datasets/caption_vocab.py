"""Word vocabulary of the caption head: the Show-Attend-Tell word map.

ViSFT's caption head predicts ids of the sgrvinod tutorial's word map
(``WORDMAP_coco_5_cap_per_img_5_min_word_freq.json``, 9490 entries on
Karpathy COCO), not BPE tokens. This class builds, saves and loads that map in
its original flat ``{word: id}`` JSON, so official caption-head checkpoints and
word maps stay usable.

Id layout: ``<pad>`` = 0; the words with frequency > ``min_word_freq`` are
1..N in order of first appearance (the order the official script produces by
iterating a ``collections.Counter``); then ``<unk>`` = N+1, ``<start>`` = N+2,
``<end>`` = N+3.

Tokenisation: lowercase, delete the ASCII punctuation characters
(``string.punctuation``, so ``"man's"`` becomes ``"mans"``), split on
whitespace. The official script reads pre-tokenised Karpathy captions instead.
"""
import json
import string
from collections import Counter
from typing import Dict, Iterable, List, Sequence

PAD = '<pad>'
UNK = '<unk>'
START = '<start>'
END = '<end>'
SPECIAL_TOKENS = (PAD, UNK, START, END)

_DELETE_PUNCTUATION = str.maketrans('', '', string.punctuation)


def tokenize(caption: str) -> List[str]:
    """Lowercase, delete punctuation, split on whitespace."""
    return caption.lower().translate(_DELETE_PUNCTUATION).split()


class WordVocabulary:
    """A bijection between words and ids in the sgrvinod word-map layout.

    Args:
        word_map: ``{word: id}`` holding the four special tokens, with
            ``<pad>`` = 0 and distinct ids.
    """

    def __init__(self, word_map: Dict[str, int]):
        missing = [token for token in SPECIAL_TOKENS if token not in word_map]
        if missing:
            raise ValueError(f'word map lacks the special tokens {missing}')
        if word_map[PAD] != 0:
            raise ValueError(f'{PAD} must have id 0, got {word_map[PAD]}')
        self.word_to_id = {word: int(idx) for word, idx in word_map.items()}
        self.id_to_word = {idx: word for word, idx in self.word_to_id.items()}
        if len(self.id_to_word) != len(self.word_to_id):
            raise ValueError('word map assigns one id to several words')
        self.pad_id = self.word_to_id[PAD]
        self.unk_id = self.word_to_id[UNK]
        self.start_id = self.word_to_id[START]
        self.end_id = self.word_to_id[END]
        self.special_ids = frozenset(self.word_to_id[token]
                                     for token in SPECIAL_TOKENS)

    @classmethod
    def build(cls,
              captions: Iterable[str],
              min_word_freq: int = 5) -> 'WordVocabulary':
        """The map of ``captions`` split by :func:`tokenize` (see
        :meth:`build_from_tokens`)."""
        return cls.build_from_tokens(
            (tokenize(caption) for caption in captions), min_word_freq)

    @classmethod
    def build_from_tokens(cls,
                          token_lists: Iterable[Sequence[str]],
                          min_word_freq: int = 5) -> 'WordVocabulary':
        """Keep the words seen more than ``min_word_freq`` times in
        ``token_lists``, numbered from 1 in order of first appearance, then
        add the special tokens: the official ``create_input_files`` given
        every caption's tokens."""
        word_freq = Counter()
        for tokens in token_lists:
            word_freq.update(tokens)
        words = [
            word for word, freq in word_freq.items() if freq > min_word_freq
        ]
        word_map = {word: idx for idx, word in enumerate(words, start=1)}
        for token in (UNK, START, END):
            word_map[token] = len(word_map) + 1
        word_map[PAD] = 0
        return cls(word_map)

    @classmethod
    def load(cls, path: str) -> 'WordVocabulary':
        """Read a flat ``{word: id}`` JSON (an official ``WORDMAP_*.json``)."""
        with open(path, encoding='utf-8') as f:
            return cls(json.load(f))

    def save(self, path: str) -> None:
        """Write the flat ``{word: id}`` JSON of the official
        ``WORDMAP_*.json``."""
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(self.word_to_id, f)

    def __len__(self) -> int:
        return len(self.word_to_id)

    def encode(self, caption: str, max_len: int = 50) -> List[int]:
        """``[<start>] + word ids + [<end>]``, keeping the first ``max_len``
        words; words outside the vocabulary become ``<unk>``."""
        words = tokenize(caption)[:max_len]
        return ([self.start_id] +
                [self.word_to_id.get(word, self.unk_id)
                 for word in words] + [self.end_id])

    def decode(self, ids: Sequence[int]) -> str:
        """The words before the first ``<end>``, special tokens left out."""
        words = []
        for idx in ids:
            idx = int(idx)
            if idx == self.end_id:
                break
            if idx not in self.special_ids:
                words.append(self.id_to_word[idx])
        return ' '.join(words)
