"""Show-Attend-Tell caption head of ViSFT: an LSTM decoder with additive
attention.

Hand-written because no OpenMMLab package has an LSTM-attention caption
decoder (mmpretrain's captioners are transformer language models). Layers,
initialisation and loss follow the official ViSFT ``DecoderWithAttention``
(from the sgrvinod Show-Attend-Tell tutorial) and its parameter names are the
same, so an official checkpoint's ``visft_heads.caption_decoder.*`` keys load
into this head after a prefix rename.

Shapes: the last backbone map (B, C, h, w) is average-pooled to
(B, C, encoded_size, encoded_size) and read as P = encoded_size**2 "pixels"
of dimension C.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.structures import DataSample
from torch.nn.utils.rnn import pad_sequence

from visft_mm.datasets.caption_vocab import WordVocabulary
from visft_mm.registry import MODELS


class AdditiveAttention(nn.Module):
    """Bahdanau attention over image pixels, conditioned on the LSTM state."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)

    def forward(self, pixels: torch.Tensor, projected_pixels: torch.Tensor,
                hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Attend ``pixels`` (B, P, C) with ``hidden`` (B, D).

        ``projected_pixels`` is ``encoder_att(pixels)`` (B, P, A), computed
        once per caption rather than at every step. Returns the
        attention-weighted pixel (B, C) and the weights (B, P).
        """
        energy = self.full_att(
            F.relu(projected_pixels + self.decoder_att(hidden).unsqueeze(1)))
        alpha = energy.squeeze(2).softmax(dim=1)
        context = (pixels * alpha.unsqueeze(2)).sum(dim=1)
        return context, alpha


@MODELS.register_module()
class ShowAttendTellHead(BaseModule):
    """Caption head: teacher-forced loss for training, beam search for
    inference.

    Args:
        in_channels: Channels C of the backbone's last feature map.
        vocab_file: Path of a ``WORDMAP_*.json``; give this or ``vocab``.
        vocab: A built :class:`WordVocabulary`; give this or ``vocab_file``.
        vocab_size: If given, the vocabulary must have this many entries
            (9490 for the official Karpathy-COCO word map and checkpoints).
        attention_dim, embed_dim, decoder_dim: Widths of the attention
            projections, word embeddings and LSTM state (384 in ViSFT).
        dropout: Dropout on the LSTM output before ``fc``.
        encoded_size: Side of the pooled feature map (14: 196 pixels).
        max_len: Most words of a ground-truth caption; longer ones are cut.
        alpha_c: Weight of the doubly-stochastic attention regulariser.
        beam_size: Default beam width of :meth:`predict` (1 is greedy).
        max_decode_len: Most decoding steps of a generated caption, the
            ``<end>`` step included; a caption that has not ended is cut there.
        init_cfg: mmengine initialisation config. Without it the layers keep
            the official initialisation done here: PyTorch defaults, then
            ``embedding`` and ``fc.weight`` U(-0.1, 0.1) and ``fc.bias`` 0.
    """

    def __init__(self,
                 in_channels: int,
                 vocab_file: Optional[str] = None,
                 vocab: Optional[WordVocabulary] = None,
                 vocab_size: Optional[int] = None,
                 attention_dim: int = 384,
                 embed_dim: int = 384,
                 decoder_dim: int = 384,
                 dropout: float = 0.5,
                 encoded_size: int = 14,
                 max_len: int = 50,
                 alpha_c: float = 1.0,
                 beam_size: int = 3,
                 max_decode_len: int = 20,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if (vocab_file is None) == (vocab is None):
            raise ValueError('give exactly one of vocab_file and vocab')
        self.vocab = vocab if vocab is not None else WordVocabulary.load(
            vocab_file)
        if vocab_size is not None and vocab_size != len(self.vocab):
            raise ValueError(
                f'vocab_size is {vocab_size} but the vocabulary has '
                f'{len(self.vocab)} entries')
        if beam_size < 1 or max_decode_len < 1:
            raise ValueError('beam_size and max_decode_len must be positive')
        self.max_len = max_len
        self.alpha_c = alpha_c
        self.beam_size = beam_size
        self.max_decode_len = max_decode_len

        self.adaptive_pool = nn.AdaptiveAvgPool2d(encoded_size)
        self.attention = AdditiveAttention(in_channels, decoder_dim,
                                           attention_dim)
        self.embedding = nn.Embedding(len(self.vocab), embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.decode_step = nn.LSTMCell(embed_dim + in_channels, decoder_dim)
        self.init_h = nn.Linear(in_channels, decoder_dim)
        self.init_c = nn.Linear(in_channels, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, in_channels)
        self.fc = nn.Linear(decoder_dim, len(self.vocab))
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.fc.weight, -0.1, 0.1)
        nn.init.zeros_(self.fc.bias)

    def encode_image(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The last map (B, C, h, w) of ``feats`` as pooled pixels (B, P,
        C)."""
        return self.adaptive_pool(feats[-1]).flatten(2).transpose(1, 2)

    def init_state(self,
                   pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Initial LSTM hidden and cell states (B, D) from the mean pixel."""
        mean_pixel = pixels.mean(dim=1)
        return self.init_h(mean_pixel), self.init_c(mean_pixel)

    def step(
        self, pixels: torch.Tensor, projected_pixels: torch.Tensor,
        words: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoding step: read the previous ``words`` (B,) and return the
        next-word logits (B, V), the new ``h`` and ``c``, and the attention
        weights (B, P)."""
        context, alpha = self.attention(pixels, projected_pixels, h)
        context = torch.sigmoid(self.f_beta(h)) * context
        h, c = self.decode_step(
            torch.cat([self.embedding(words), context], dim=1), (h, c))
        return self.fc(self.dropout(h)), h, c, alpha

    def forward(self, feats: Sequence[torch.Tensor],
                captions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing on ``captions`` (B, T), encoded and padded ids that
        start with ``<start>``. Returns the logits (B, T-1, V) predicting
        ``captions[:, 1:]`` and the attention weights (B, T-1, P)."""
        pixels = self.encode_image(feats)
        projected_pixels = self.attention.encoder_att(pixels)
        h, c = self.init_state(pixels)
        logits, alphas = [], []
        for t in range(captions.size(1) - 1):
            step_logits, h, c, alpha = self.step(pixels, projected_pixels,
                                                 captions[:, t], h, c)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, dim=1), torch.stack(alphas, dim=1)

    def loss(self, feats: Sequence[torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Cross-entropy over the words after ``<start>`` up to ``<end>``, plus
        ``alpha_c * ((1 - sum_t alpha_t) ** 2).mean()``.

        ``gt_caption`` of a sample is a string, or a list whose first string is
        used (the dataset chooses which caption comes first). Steps after a
        caption's ``<end>`` are masked out, which equals the official
        sort + ``pack_padded_sequence`` with ``decode_lengths = caplen - 1``.
        """
        device = feats[-1].device
        captions, decode_lengths = self.encode_captions(data_samples, device)
        logits, alphas = self(feats, captions)
        targets = captions[:, 1:]
        valid = torch.arange(
            targets.size(1), device=device) < decode_lengths.unsqueeze(1)
        valid_logits, valid_targets = logits[valid], targets[valid]
        loss_caption = F.cross_entropy(valid_logits, valid_targets)
        attention_mass = (alphas * valid.unsqueeze(2)).sum(dim=1)  # (B, P)
        loss_caption_attn = self.alpha_c * ((1. - attention_mass)**2).mean()

        with torch.no_grad():
            top5 = valid_logits.topk(
                min(5, valid_logits.size(1)), dim=1).indices
            top5_acc = top5.eq(
                valid_targets.unsqueeze(1)).any(dim=1).float().mean() * 100
        return dict(
            loss_caption=loss_caption,
            loss_caption_attn=loss_caption_attn,
            caption_top5_acc=top5_acc)

    def encode_captions(
            self, data_samples: List[DataSample],
            device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """The samples' training captions as ``<start>``/``<end>``-framed ids
        padded with ``<pad>`` (B, T), and their decode lengths (B,): the
        number of predicted steps, words + 1."""
        encoded = [
            torch.tensor(
                self.vocab.encode(
                    self._training_caption(sample), self.max_len))
            for sample in data_samples
        ]
        captions = pad_sequence(
            encoded, batch_first=True, padding_value=self.vocab.pad_id)
        decode_lengths = torch.tensor([len(ids) - 1 for ids in encoded])
        return captions.to(device), decode_lengths.to(device)

    def predict(self, feats: Sequence[torch.Tensor],
                data_samples: List[DataSample]) -> List[DataSample]:
        """Set ``pred_caption`` of each sample to its beam-search caption."""
        for sample, ids in zip(data_samples, self.generate(feats)):
            sample.pred_caption = self.vocab.decode(ids)
        return data_samples

    @torch.no_grad()
    def generate(self,
                 feats: Sequence[torch.Tensor],
                 beam_size: Optional[int] = None) -> List[List[int]]:
        """Beam-search word ids per image, without ``<start>`` and
        ``<end>``."""
        pixels = self.encode_image(feats)
        return [
            self._beam_search(pixels[i:i + 1], beam_size or self.beam_size)
            for i in range(pixels.size(0))
        ]

    def _beam_search(self, pixels: torch.Tensor, beam_size: int) -> List[int]:
        """The highest summed log-probability caption of one image (1, P, C).

        Each step extends the live captions by every word and ranks the
        extensions. ``<end>`` extensions within the top ``beam_size`` finish a
        caption; the best ``beam_size`` other extensions stay live. Search
        stops once no live caption scores above the best finished one (log
        probabilities only lower a score), or after ``max_decode_len`` steps,
        where the live captions, cut, compete with the finished ones (as in
        Hugging Face's beam search). With ``beam_size=1`` this is greedy
        decoding.
        """
        end_id = self.vocab.end_id
        projected_pixels = self.attention.encoder_att(pixels)
        h, c = self.init_state(pixels)
        words = torch.full((1, ),
                           self.vocab.start_id,
                           dtype=torch.long,
                           device=pixels.device)
        live_captions: List[List[int]] = [[]]
        live_scores = pixels.new_zeros(1, dtype=torch.float)
        finished: List[Tuple[float, List[int]]] = []
        for _ in range(self.max_decode_len):
            num_live = len(live_captions)
            logits, h, c, _ = self.step(
                pixels.expand(num_live, -1, -1),
                projected_pixels.expand(num_live, -1, -1), words, h, c)
            scores = live_scores.unsqueeze(1) + logits.float().log_softmax(
                dim=1)
            vocab_size = scores.size(1)
            width = min(beam_size, scores.numel())

            top_scores, top_indices = scores.flatten().topk(width)
            for score, index in zip(top_scores.tolist(), top_indices.tolist()):
                if index % vocab_size == end_id:
                    finished.append(
                        (score, live_captions[index // vocab_size]))

            scores[:, end_id] = float('-inf')
            live_scores, live_indices = scores.flatten().topk(width)
            beams = live_indices // vocab_size
            words = live_indices % vocab_size
            live_captions = [
                live_captions[beam] + [word]
                for beam, word in zip(beams.tolist(), words.tolist())
            ]
            h, c = h[beams], c[beams]
            if finished and max(
                    score for score, _ in finished) >= live_scores[0].item():
                break
        candidates = finished + list(zip(live_scores.tolist(), live_captions))
        return max(candidates, key=lambda scored: scored[0])[1]

    @staticmethod
    def _training_caption(sample: DataSample) -> str:
        caption = sample.get('gt_caption')
        if isinstance(caption, (list, tuple)):
            caption = caption[0]
        if not isinstance(caption, str):
            raise TypeError(
                'gt_caption must be a string or a list of strings, '
                f'got {caption!r}')
        return caption
