"""EVA-CLIP for the out-of-domain benchmarks: zero-shot classification and
image-text retrieval, with the vision trunk taken from a (ViSFT) backbone.

Hand-written because mmpretrain's ``CLIP`` has no EVA vision tower and no EVA
text configs, fetches its tokenizer from the Hugging Face hub, and has no
``predict_all`` for its ``RetrievalTestLoop``. The parts are reused: the
image tower is :class:`EVAViT` (cls token, final norm) plus the projection
``visual.head``; the text tower and BPE tokenizer are open_clip's (its
``EVA01-g-14`` / ``EVA02-E-14-plus`` configs, tokenizer vocabulary shipped
with the package); class names and prompts are mmpretrain's.

Weights come from an original EVA-CLIP checkpoint (``visual.*``, ``text.*``,
``logit_scale``) when the model is built, the rule every frozen model of
visft_mm follows (``FrozenBackbone``): ``tools/test.py`` never calls
``init_weights``.
"""
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.models.multimodal.blip.blip_retrieval import all_gather_concat
from mmpretrain.models.multimodal.clip.clip import PROMPT_MAP
from mmpretrain.structures import DataSample
from open_clip import get_model_config
from open_clip.model import _build_text_tower
from open_clip.tokenizer import SimpleTokenizer

from visft_mm.checkpoints.eva_layouts import (check_post_norm,
                                              eva_clip_model_weights,
                                              load_backbone)
from visft_mm.checkpoints.exports import export_eva_clip
from visft_mm.checkpoints.io import (CheckpointError, load_model_state_dict,
                                     module_misfit)
from visft_mm.models.backbones import EVAViT
from visft_mm.normalisation import CLIP_MEAN, CLIP_STD
from visft_mm.registry import MODELS
from .imagenet_variants import imagenet_class_names

# Original EVA-CLIP checkpoints of the open_clip configs, for error messages.
EVA_CLIP_FILES = {
    'EVA01-g-14': 'EVA01_CLIP_g_14_psz14_s11B.pt',
    'EVA02-E-14-plus': 'EVA02_CLIP_E_psz14_plus_s9B.pt',
}
EVA_CLIP_URL = 'https://huggingface.co/QuanSun/EVA-CLIP'
BACKBONE_HOW_TO_GET = (
    'write a base backbone with tools/model_converters/eva2visft.py or a '
    'ViSFT one with tools/model_converters/merge_lora.py')
# Prompts per text-tower call when building the zero-shot classifier.
TEXT_BATCH_SIZE = 1024

Template = Callable[[str], str]


def check_checkpoint_files(clip_checkpoint: str,
                           backbone_checkpoint: Optional[str],
                           clip_file: str = 'the EVA-CLIP checkpoint') -> None:
    """Raise :class:`CheckpointError` naming a missing file and how to get
    it."""
    if not os.path.isfile(clip_checkpoint):
        raise CheckpointError(
            f'EVA-CLIP checkpoint {clip_checkpoint} not found; download '
            f'{clip_file} from {EVA_CLIP_URL} and put it there (or set '
            'model.clip_checkpoint)')
    if backbone_checkpoint and not os.path.isfile(backbone_checkpoint):
        raise CheckpointError(
            f'backbone checkpoint {backbone_checkpoint} not found; '
            f'{BACKBONE_HOW_TO_GET}')


def captions_of(sample: DataSample) -> List[str]:
    """The captions of a retrieval sample (``text``: one string or a list)."""
    return list(sample.text) if isinstance(sample.text,
                                           (list, tuple)) else [sample.text]


def resolve_templates(templates: Union[str, Sequence[str]]) -> List[Template]:
    """Prompt templates: a name of mmpretrain's ``PROMPT_MAP``
    (``'openai_imagenet'``: CLIP's 80 ImageNet prompts, ``'vanilla'``: one)
    or format strings with ``{}`` for the class name."""
    if isinstance(templates, str):
        if templates not in PROMPT_MAP:
            raise KeyError(
                f'unknown prompt templates {templates!r}; choose from '
                f'{sorted(PROMPT_MAP)} or give format strings')
        return list(PROMPT_MAP[templates])
    return [template.format for template in templates]


def resolve_class_names(class_names: Union[str, Sequence[str]]) -> List[str]:
    """Class names: ``'imagenet'`` or an ImageNet variant (``'imagenet-a'``,
    ``'imagenet-r'``: their 200 classes), or the names themselves."""
    if isinstance(class_names, str):
        return imagenet_class_names(class_names)
    return list(class_names)


@MODELS.register_module()
class EVACLIP(BaseModel):
    """EVA-CLIP whose vision trunk may come from a separate backbone.

    ``mode='predict'`` classifies images zero-shot against ``class_names``
    (every name in every template, embeddings averaged per class, built once);
    ``mode='tensor'`` returns normalised image features and the features of
    the data samples' ``text`` for mmpretrain's ``RetrievalTestLoop``, which
    then calls :meth:`predict_all`.

    Args:
        clip_checkpoint: Original EVA-CLIP checkpoint (``visual.*``,
            ``text.*``,
            ``logit_scale``), e.g. ``EVA01_CLIP_g_14_psz14_s11B.pt``.
        backbone_checkpoint: EVA backbone (any layout ``eva2visft.py`` reads;
            e.g. base or ViSFT-merged) whose trunk (``patch_embed``,
            ``blocks``, ``norm`` if it has one) replaces the CLIP file's, as
            ``visft2evaclip.py`` does; ``cls_token``, ``pos_embed`` and the
            projection head stay the CLIP file's. None: the CLIP file's own.
        vision_arch: :class:`EVAViT` arch (``'eva-g'``, ``'eva-e'`` or a dict).
        open_clip_model: open_clip config giving the text tower and the
            embedding size (``'EVA01-g-14'``, ``'EVA02-E-14-plus'``).
        embed_dim: Overrides the config's joint embedding size.
        text_cfg: Overrides entries of the config's ``text_cfg``.
        class_names: Zero-shot classes (see :func:`resolve_class_names`).
        prompt_templates: Zero-shot prompts (see :func:`resolve_templates`).
        data_preprocessor: By default mmpretrain's
            ``MultiModalDataPreprocessor``
            with EVA-CLIP's normalisation (OpenAI CLIP mean/std, BGR→RGB).
    """

    def __init__(self,
                 clip_checkpoint: str,
                 backbone_checkpoint: Optional[str] = None,
                 vision_arch: Union[str, dict] = 'eva-g',
                 open_clip_model: str = 'EVA01-g-14',
                 embed_dim: Optional[int] = None,
                 text_cfg: Optional[dict] = None,
                 class_names: Union[str, Sequence[str]] = 'imagenet',
                 prompt_templates: Union[str,
                                         Sequence[str]] = 'openai_imagenet',
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='mmpretrain.MultiModalDataPreprocessor',
                mean=[v * 255 for v in CLIP_MEAN],
                std=[v * 255 for v in CLIP_STD],
                to_rgb=True)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        config = get_model_config(open_clip_model)
        if config is None:
            raise KeyError(
                f'open_clip has no model config {open_clip_model!r}')
        # Before building the towers, which takes long at full size.
        check_checkpoint_files(
            clip_checkpoint, backbone_checkpoint,
            EVA_CLIP_FILES.get(open_clip_model, 'the EVA-CLIP checkpoint'))
        embed_dim = embed_dim or config['embed_dim']
        text_cfg = {**config['text_cfg'], **(text_cfg or {})}

        self.visual = EVAViT(
            arch=vision_arch, with_cls_token=True, out_type='cls_token')
        self.visual_proj = nn.Linear(self.visual.embed_dims,
                                     embed_dim)  # EVA-CLIP's visual.head
        self.text = _build_text_tower(embed_dim, text_cfg)
        self.logit_scale = nn.Parameter(torch.zeros([]))
        self.tokenizer = SimpleTokenizer(
            context_length=text_cfg['context_length'])

        self.class_names = resolve_class_names(class_names)
        self.prompt_templates = resolve_templates(prompt_templates)
        self.class_embeddings: Optional[
            torch.Tensor] = None  # built by the first predict

        self._load_weights(clip_checkpoint, backbone_checkpoint)

    def init_weights(self):
        """Nothing to do: the weights were loaded from the checkpoints when the
        model was built (re-initialising would overwrite them)."""

    # ---------------------------------------------------------------- weights
    def _load_weights(self, clip_checkpoint: str,
                      backbone_checkpoint: Optional[str]) -> None:
        """Load ``clip_checkpoint``, its vision trunk replaced by that of
        ``backbone_checkpoint`` if given (both existing files) exactly as
        ``tools/model_converters/visft2evaclip.py`` exports it; every key must
        fit (strict), else :class:`CheckpointError` before anything is
        loaded."""
        clip_sd = load_model_state_dict(clip_checkpoint)
        source = clip_checkpoint
        if backbone_checkpoint:
            backbone = load_backbone(backbone_checkpoint)
            check_post_norm(
                backbone.converted,
                bool(self.visual.arch_settings.get('post_norm', False)),
                backbone_checkpoint)
            export = export_eva_clip(
                backbone.state_dict, clip_sd, source=clip_checkpoint)
            clip_sd = export.state_dict
            source = (f'{clip_checkpoint} with the trunk of '
                      f'{backbone_checkpoint}')
            for note in export.notes:
                print_log(
                    f'{backbone_checkpoint} ({backbone.layout} layout): '
                    f'{note}',
                    logger='current',
                    level=logging.INFO)
        weights = eva_clip_model_weights(clip_sd, source)

        misfit = module_misfit(self, weights)
        if misfit:
            raise CheckpointError(f'{source}: the weights do not fit this '
                                  f'{type(self).__name__}: {misfit}')
        self.load_state_dict(weights, strict=True)
        print_log(
            f'{source}: loaded {len(weights)} EVA-CLIP tensors',
            logger='current',
            level=logging.INFO)

    # ---------------------------------------------------------------- forward
    def forward(self,
                images: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'predict'):
        if mode == 'predict':
            return self.predict(images, data_samples)
        if mode == 'tensor':
            return self.extract_feat(images, data_samples)
        raise RuntimeError(
            f'{type(self).__name__} evaluates only; invalid mode {mode!r}')

    def extract_image_feat(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → unnormalised CLIP image embeddings (B, D)."""
        return self.visual_proj(self.visual(images)[0])

    def extract_text_feat(self, texts: Sequence[str]) -> torch.Tensor:
        """Strings → unnormalised CLIP text embeddings (N, D)."""
        tokens = self.tokenizer(list(texts)).to(self.logit_scale.device)
        return self.text(tokens)

    def extract_feat(
        self,
        images: torch.Tensor,
        data_samples: Optional[List[DataSample]] = None
    ) -> Dict[str, torch.Tensor]:
        """Normalised ``image_feat`` and, for samples with ``text`` (one
        caption or a list), ``text_feat`` in sample-then-caption order."""
        feats = {
            'image_feat': F.normalize(self.extract_image_feat(images), dim=-1)
        }
        texts = [
            text for sample in data_samples or [] if 'text' in sample
            for text in captions_of(sample)
        ]
        if texts:
            feats['text_feat'] = F.normalize(
                self.extract_text_feat(texts), dim=-1)
        return feats

    # ------------------------------------------------ zero-shot classification
    def build_class_embeddings(self,
                               class_names: Sequence[str]) -> torch.Tensor:
        """(num_classes, D) zero-shot classifier: per class, the normalised
        mean of its normalised prompt embeddings (CLIP's prompt ensembling)."""
        prompts = [
            template(name) for name in class_names
            for template in self.prompt_templates
        ]
        print_log(
            f'zero-shot classifier: {len(class_names)} classes x '
            f'{len(self.prompt_templates)} prompts',
            logger='current',
            level=logging.INFO)
        feats = torch.cat([
            F.normalize(
                self.extract_text_feat(prompts[i:i + TEXT_BATCH_SIZE]), dim=-1)
            for i in range(0, len(prompts), TEXT_BATCH_SIZE)
        ])
        per_class = feats.view(
            len(class_names), len(self.prompt_templates), -1).mean(dim=1)
        return F.normalize(per_class, dim=-1)

    def predict(
            self,
            images: torch.Tensor,
            data_samples: Optional[List[DataSample]] = None
    ) -> List[DataSample]:
        """Zero-shot classification: ``pred_score`` (softmax of the scaled
        cosine similarities to the classes) and ``pred_label`` per image."""
        if self.class_embeddings is None:
            self.class_embeddings = self.build_class_embeddings(
                self.class_names)
        image_feat = F.normalize(self.extract_image_feat(images), dim=-1)
        logits = self.logit_scale.exp(
        ) * image_feat @ self.class_embeddings.to(image_feat).t()
        scores = logits.softmax(dim=-1)
        labels = scores.argmax(dim=-1, keepdim=True)
        data_samples = data_samples or [
            DataSample() for _ in range(len(images))
        ]
        for sample, score, label in zip(data_samples, scores, labels):
            sample.set_pred_score(score).set_pred_label(label)
        return data_samples

    # ------------------------------------------------------------ retrieval
    def predict_all(
        self,
        feats: Dict[str, torch.Tensor],
        data_samples: List[DataSample],
        num_images: Optional[int] = None,
        num_texts: Optional[int] = None
    ) -> Tuple[List[DataSample], List[DataSample]]:
        """Image→text and text→image retrieval for mmpretrain's
        ``RetrievalTestLoop``.

        ``feats`` and ``data_samples`` are this process's (one sample per
        image,
        holding its captions' ``gt_text_id`` and ``gt_image_id``); the other
        side is gathered from all processes and cut to ``num_images`` /
        ``num_texts`` (the sampler's padding). Scores are cosine similarities.

        Returns:
            One sample per local image (``pred_score`` over all texts,
            ``gt_label`` = its caption ids) and one per local caption
            (``pred_score`` over all images, ``gt_label`` = its image id).
        """
        image_feat, text_feat = feats['image_feat'], feats['text_feat']
        all_images = all_gather_concat(image_feat)[:num_images]
        all_texts = all_gather_concat(text_feat)[:num_texts]

        i2t_samples = []
        for sample, score in zip(data_samples, image_feat @ all_texts.t()):
            sample.gt_label = sample.gt_text_id
            i2t_samples.append(sample.set_pred_score(score))
        captions = [
            (text, image_id) for sample in data_samples
            for text, image_id in zip(captions_of(sample), sample.gt_image_id)
        ]
        if len(captions) != len(text_feat):
            raise ValueError(
                f'{len(text_feat)} text features for {len(captions)} captions')
        t2i_samples = [
            DataSample(text=text, gt_label=image_id).set_pred_score(score)
            for (text,
                 image_id), score in zip(captions, text_feat @ all_images.t())
        ]
        return i2t_samples, t2i_samples
