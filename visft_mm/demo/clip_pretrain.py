"""CLIP-style image-caption pretraining of a small EVAViT, standing in for
EVA-CLIP in the CPU demo.

Hand-written: no OpenMMLab CLIP trainer fits a tiny from-scratch model. A
caption is a positive of every image it describes (simple scenes share
captions such as "a red circle"), so each InfoNCE row spreads its target over
all its positives.
"""
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from visft_mm.benchmarks.retrieval_metric import Numpy2RetrievalRecall
from visft_mm.checkpoints.eva_layouts import load_eva_weights
from visft_mm.checkpoints.io import (CheckpointError, module_misfit,
                                     read_checkpoint, save_atomic)
from visft_mm.datasets.caption_vocab import WordVocabulary, tokenize
from visft_mm.datasets.coco_caption import (COCO_LAYOUT, parse_caption_images,
                                            read_caption_json)
from visft_mm.models.backbones import EVAViT
from visft_mm.normalisation import CLIP_MEAN, CLIP_STD

MAX_CAPTION_WORDS = 30
EMBED_DIMS = 128  # joint image-text embedding
TEXT_WIDTH = 128
TEXT_LAYERS = 2
TEXT_HEADS = 4
INIT_TEMPERATURE = 0.07  # CLIP's initial softmax temperature
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(logit_scale) here
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.1
GRAD_CLIP_NORM = 1.0
LOG_INTERVAL = 20


@dataclass
class CaptionedImages:
    """A split held in memory.

    Attributes:
        images: (N, 3, S, S) CLIP-normalised images.
        captions: The captions of each image, tokenised and joined by spaces
            (lowercase, no punctuation).
        caption_texts: Distinct captions of the split, in that form.
        caption_tokens: (M, L) ids of ``caption_texts``, ``<start>`` ...
            ``<end>``, padded with ``<pad>`` (0).
        image_captions: (N, M) bool, whether caption m describes image n.
    """
    images: torch.Tensor
    captions: List[List[str]]
    caption_texts: List[str]
    caption_tokens: torch.Tensor
    image_captions: torch.Tensor


@dataclass
class PretrainReport:
    """What a pretraining run achieved.

    ``fixed_batch_loss_*`` is the loss of the first training batch before and
    after training; ``retrieval_*`` the image-to-caption Recall@1 (percent)
    on the evaluation split (the nearest of its distinct captions describes
    the image), ``retrieval_chance`` that of a caption drawn at random.
    """
    losses: List[float]
    fixed_batch_loss_before: float
    fixed_batch_loss_after: float
    retrieval_before: float
    retrieval_after: float
    retrieval_chance: float
    seconds: float


def load_image(path: str, img_size: int) -> torch.Tensor:
    """(3, S, S) CLIP-normalised image, resized bilinearly when its size
    differs."""
    with Image.open(path) as image:
        image = image.convert('RGB')
        if image.size != (img_size, img_size):
            image = image.resize((img_size, img_size), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (pixels.permute(2, 0, 1) - mean) / std


def load_captioned_split(data_root: str, split: str, img_size: int,
                         vocab: WordVocabulary) -> CaptionedImages:
    """Images of ``data_root/split/`` with the captions of
    ``data_root/annotations/captions_{split}.json`` (COCO captions layout)."""
    ann_file = os.path.join(data_root, 'annotations', f'captions_{split}.json')
    layout, data = read_caption_json(ann_file)
    if layout != COCO_LAYOUT:
        raise ValueError(f'{ann_file} is not a COCO captions json')
    entries = parse_caption_images(ann_file, layout, data)
    if not entries:
        raise ValueError(f'{ann_file} has no captioned images')
    images = torch.stack([
        load_image(os.path.join(data_root, split, entry.file_path), img_size)
        for entry in entries
    ])
    # Captions are compared as the words the caption encoder sees.
    captions = [[' '.join(tokenize(caption)) for caption in entry.captions]
                for entry in entries]
    caption_texts = sorted(
        {caption
         for image_captions in captions
         for caption in image_captions})
    index = {caption: i for i, caption in enumerate(caption_texts)}
    image_captions = torch.zeros(
        len(entries), len(caption_texts), dtype=torch.bool)
    for row, image_caption_list in enumerate(captions):
        image_captions[row, [index[caption]
                             for caption in image_caption_list]] = True
    encoded = [
        vocab.encode(caption, MAX_CAPTION_WORDS) for caption in caption_texts
    ]
    caption_tokens = torch.full((len(encoded), max(map(len, encoded))),
                                vocab.pad_id)
    for row, ids in enumerate(encoded):
        caption_tokens[row, :len(ids)] = torch.tensor(ids)
    return CaptionedImages(images, captions, caption_texts, caption_tokens,
                           image_captions)


class CaptionEncoder(nn.Module):
    """Word and position embeddings, a small pre-norm transformer, the mean
    over the non-padding tokens and a projection into the joint space."""

    def __init__(self, vocab_size: int, embed_dims: int, pad_id: int):
        super().__init__()
        self.pad_id = pad_id
        self.word_embed = nn.Embedding(
            vocab_size, TEXT_WIDTH, padding_idx=pad_id)
        self.pos_embed = nn.Parameter(
            torch.randn(MAX_CAPTION_WORDS + 2, TEXT_WIDTH) * 0.01)
        layer = nn.TransformerEncoderLayer(
            TEXT_WIDTH,
            TEXT_HEADS,
            2 * TEXT_WIDTH,
            dropout=0.0,
            batch_first=True,
            norm_first=True)
        self.encoder = nn.TransformerEncoder(
            layer, TEXT_LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(TEXT_WIDTH)
        self.proj = nn.Linear(TEXT_WIDTH, embed_dims, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, embed_dims)."""
        padding = tokens == self.pad_id
        x = self.word_embed(tokens) + self.pos_embed[:tokens.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=padding))
        keep = (~padding).unsqueeze(-1).to(x.dtype)
        return self.proj((x * keep).sum(1) / keep.sum(1))


class ImageCaptionCLIP(nn.Module):
    """EVAViT image tower (mean of its final feature map, projected) and a
    caption tower, compared by cosine similarity times a learned scale."""

    def __init__(self,
                 backbone: EVAViT,
                 vocab: WordVocabulary,
                 embed_dims: int = EMBED_DIMS):
        super().__init__()
        self.backbone = backbone
        self.image_proj = nn.Linear(
            backbone.embed_dims, embed_dims, bias=False)
        self.caption_encoder = CaptionEncoder(
            len(vocab), embed_dims, vocab.pad_id)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1 / INIT_TEMPERATURE)))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)[-1]  # (B, C, h, w)
        return F.normalize(self.image_proj(features.mean(dim=(2, 3))), dim=-1)

    def encode_captions(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.caption_encoder(tokens), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()


def save_clip_towers(model: ImageCaptionCLIP, arch: Dict[str, int],
                     img_size: int, path) -> None:
    """Write what of ``model`` is not its backbone (image projection, caption
    encoder, logit scale) with the backbone's ``arch`` and ``img_size`` in the
    meta, for :func:`load_clip` to put a backbone under them."""
    towers = {
        key: tensor
        for key, tensor in model.state_dict().items()
        if not key.startswith('backbone.')
    }
    save_atomic(
        dict(state_dict=towers, meta=dict(arch=dict(arch), img_size=img_size)),
        path)


def load_clip(towers_path, backbone_path,
              vocab: WordVocabulary) -> ImageCaptionCLIP:
    """The model of :func:`save_clip_towers`'s file, in eval mode, with the
    backbone of ``backbone_path`` (any layout ``load_eva_weights`` reads: the
    pre-trained one, or one with a LoRA merged).

    Raises:
        CheckpointError: either file is missing or unreadable, or a key
            misfits; nothing is loaded then.
    """
    towers = read_checkpoint(towers_path)
    if not {'arch', 'img_size'} <= set(towers.meta):
        raise CheckpointError(
            f'{os.fspath(towers_path)}: not a demo CLIP towers file (its meta '
            'lacks arch and img_size); tools/misc/pretrain_demo_backbone.py '
            '--towers-out writes one')
    backbone = EVAViT(
        arch=dict(towers.meta['arch']),
        pretrain_img_size=towers.meta['img_size'],
        with_cls_token=False)
    load_eva_weights(backbone, backbone_path)
    model = ImageCaptionCLIP(backbone, vocab)
    weights = {
        **{
            f'backbone.{k}': v
            for k, v in backbone.state_dict().items()
        },
        **towers.state_dict
    }
    misfit = module_misfit(model, weights)
    if misfit:
        raise CheckpointError(
            f'{os.fspath(towers_path)}: the towers do not fit the '
            f'{len(vocab)}-word vocabulary and this backbone: {misfit}')
    model.load_state_dict(weights, strict=True)
    return model.eval()


def contrastive_loss(image_embeds: torch.Tensor, caption_embeds: torch.Tensor,
                     positives: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: each row's target is uniform
    over its positives. ``positives`` (B_img, B_cap) must have a True in every
    row and column."""
    logits = scale * image_embeds @ caption_embeds.t()
    targets = positives.to(logits.dtype)
    image_to_caption = -(targets / targets.sum(1, keepdim=True) *
                         logits.log_softmax(1)).sum(1).mean()
    caption_to_image = -(targets / targets.sum(0, keepdim=True) *
                         logits.log_softmax(0)).sum(0).mean()
    return (image_to_caption + caption_to_image) / 2


class CaptionedBatches:
    """Batches of distinct images (every image once per epoch, in a seeded
    order), each with one of its captions drawn at random."""

    def __init__(self, data: CaptionedImages, batch_size: int,
                 generator: torch.Generator):
        if not 2 <= batch_size <= len(data.captions):
            raise ValueError(
                f'batch_size must be in 2..{len(data.captions)} '
                f'(the number of training images), got {batch_size}')
        self.data = data
        self.batch_size = batch_size
        self.generator = generator
        self._order = torch.empty(0, dtype=torch.long)

    def sample(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) images, (B, L) caption ids, (B, B) positives."""
        if len(self._order) < self.batch_size:
            self._order = torch.randperm(
                len(self.data.captions), generator=self.generator)
        image_ids, self._order = self._order[:self.batch_size], self._order[
            self.batch_size:]
        described = self.data.image_captions[image_ids]  # (B, M)
        caption_ids = torch.stack([
            row.nonzero()[torch.randint(
                int(row.sum()), (1, ), generator=self.generator)][0, 0]
            for row in described
        ])
        return (self.data.images[image_ids],
                self.data.caption_tokens[caption_ids], described[:,
                                                                 caption_ids])


@torch.no_grad()
def retrieval_recall(model: ImageCaptionCLIP,
                     data: CaptionedImages,
                     topk: Tuple[int, ...] = (1, ),
                     batch_size: int = 64) -> Dict[str, float]:
    """Zero-shot retrieval between ``data``'s images and its distinct
    captions, mmpretrain's Recall@k (in percent) in both directions: an image
    is a hit when one of its k nearest captions describes it
    (``i2t/Recall@k``), a caption when one of its k nearest images is one it
    describes (``t2i/Recall@k``)."""
    model.eval()
    caption_embeds = model.encode_captions(data.caption_tokens)
    image_embeds = torch.cat([
        model.encode_images(data.images[start:start + batch_size])
        for start in range(0, len(data.images), batch_size)
    ])
    similarity = image_embeds @ caption_embeds.t()
    described = data.image_captions
    recalls = {}
    for direction, scores, targets in (('i2t', similarity, described),
                                       ('t2i', similarity.t(), described.t())):
        values = Numpy2RetrievalRecall.calculate(
            scores, [row.nonzero()[:, 0] for row in targets],
            topk,
            target_indices=True)
        recalls.update({
            f'{direction}/Recall@{k}': float(value)
            for k, value in zip(topk, values)
        })
    return recalls


def image_to_caption_recall(model: ImageCaptionCLIP,
                            data: CaptionedImages) -> float:
    """``i2t/Recall@1`` of :func:`retrieval_recall`."""
    return retrieval_recall(model, data)['i2t/Recall@1']


def chance_recall(data: CaptionedImages) -> float:
    """Recall@1 (percent) of a random guess, the same in both directions:
    the share of image-caption pairs in which the caption describes the
    image."""
    return 100 * data.image_captions.float().mean().item()


def warmup_cosine(iters: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``WARMUP_FRACTION`` of the
    iterations, then a cosine decay to zero."""
    warmup = max(1, int(WARMUP_FRACTION * iters))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi *
                                   (step - warmup) / max(1, iters - warmup)))

    return factor


def decay_groups(model: nn.Module) -> List[Dict]:
    """AdamW groups: weight decay on parameters of rank 2 and more (weights,
    embeddings, position tables), none on biases, LayerNorms and the logit
    scale."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [
        dict(params=decay, weight_decay=WEIGHT_DECAY),
        dict(params=no_decay, weight_decay=0.0)
    ]


def check_data_root(data_root: str, splits: Tuple[str, ...]) -> None:
    """Raise FileNotFoundError naming what ``data_root`` lacks of a demo COCO
    root."""
    required = [os.path.join('annotations', 'vocab.json')]
    for split in splits:
        required += [
            os.path.join('annotations', f'captions_{split}.json'), split
        ]
    missing = [
        path for path in required
        if not os.path.exists(os.path.join(data_root, path))
    ]
    if missing:
        raise FileNotFoundError(
            f'{data_root} is not a demo COCO root: it lacks '
            f'{", ".join(missing)}')


def pretrain_clip(
    data_root: str,
    arch: Dict[str, int],
    img_size: int = 112,
    iters: int = 600,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    eval_split: str = 'val',
    log: Optional[Callable[[str], None]] = None
) -> Tuple[ImageCaptionCLIP, PretrainReport]:
    """Train an ``EVAViT(arch, pretrain_img_size=img_size)`` and a caption
    encoder contrastively on the ``train`` split of ``data_root`` (a demo COCO
    root: ``train/``, ``annotations/captions_train.json``,
    ``annotations/vocab.json``); evaluate retrieval on ``eval_split``.

    Returns the trained model (eval mode; its image tower is ``.backbone``)
    and a report. Deterministic for a fixed seed on a given machine and
    thread count.
    """
    if iters < 1:
        raise ValueError(f'iters must be positive, got {iters}')
    log = log or (lambda message: None)
    start_time = time.time()
    check_data_root(data_root, ('train', eval_split))
    vocab = WordVocabulary.load(
        os.path.join(data_root, 'annotations', 'vocab.json'))
    train = load_captioned_split(data_root, 'train', img_size, vocab)
    evaluation = load_captioned_split(data_root, eval_split, img_size, vocab)

    torch.manual_seed(seed)
    backbone = EVAViT(
        arch=dict(arch), pretrain_img_size=img_size, with_cls_token=False)
    backbone.init_weights()
    model = ImageCaptionCLIP(backbone, vocab)
    batches = CaptionedBatches(train, batch_size,
                               torch.Generator().manual_seed(seed))
    fixed_batch = batches.sample()

    def fixed_batch_loss() -> float:
        model.eval()
        with torch.no_grad():
            images, tokens, positives = fixed_batch
            return contrastive_loss(
                model.encode_images(images), model.encode_captions(tokens),
                positives, model.scale()).item()

    fixed_batch_loss_before = fixed_batch_loss()
    retrieval_before = image_to_caption_recall(model, evaluation)
    log(f'{len(train.images)} training images, '
        f'{len(train.caption_texts)} distinct captions; '
        f'{eval_split} image->caption Recall@1 before training '
        f'{retrieval_before:.1f} (chance {chance_recall(evaluation):.1f})')

    optimizer = torch.optim.AdamW(
        decay_groups(model), lr=lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                 warmup_cosine(iters))
    losses = []
    for step in range(iters):
        model.train()
        # The first step trains on the fixed batch, so losses[0] is its loss
        # before training.
        images, tokens, positives = (
            fixed_batch if step == 0 else batches.sample())
        loss = contrastive_loss(
            model.encode_images(images), model.encode_captions(tokens),
            positives, model.scale())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % LOG_INTERVAL == 0 or step == iters - 1:
            log(f'iter {step + 1:4d}/{iters}  loss {loss.item():.4f}  '
                f'logit scale {model.scale().item():5.1f}  '
                f'{time.time() - start_time:5.0f}s')

    report = PretrainReport(
        losses=losses,
        fixed_batch_loss_before=fixed_batch_loss_before,
        fixed_batch_loss_after=fixed_batch_loss(),
        retrieval_before=retrieval_before,
        retrieval_after=image_to_caption_recall(model, evaluation),
        retrieval_chance=chance_recall(evaluation),
        seconds=time.time() - start_time)
    return model.eval(), report
