"""Key mappings from the released ViSFT stage-1 heads to the task models.

The released files (Hugging Face ``TencentARC/ViSFT``,
``eva_{g,e}_{caption,detection,segment}_heads.ckpt``) are plain state dicts of
the whole official head model without its backbone: every file holds every
head, only its own task trained. Each ``<task>_state_dict(official)`` takes
the keys of its task the way the official stage-2 loader does (by substring:
``segment``, ``caption``), maps every one of them and returns keys relative to
the task model, what ``ViSFT(task_checkpoints=...)`` loads under
``tasks.<task>.``. A key it cannot place, a missing key or a tensor of another
shape is a :class:`CheckpointError` naming the key.

:func:`convert_released_heads` turns any of the three files into one
checkpoint of ``tasks.<task>.*`` tensors (what
``tools/model_converters/official_heads2visft.py`` writes): each task from its
own file, a file whose head of that task is untrained refused as another
task's file, every key left out named with its reason.

The layouts are written out here from the official module tree (no OpenMMLab
package knows these names); the modules they load into are mmdet's and
visft_mm's.
"""
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from visft_mm.checkpoints.io import CheckpointError, load_model_state_dict

# official key -> (task-model key, shape)
Layout = Dict[str, Tuple[str, Tuple[int, ...]]]

# --------------------------------------------------------------------------
# Shared by the mappings
# --------------------------------------------------------------------------


def _add_linear(layout: Layout, official: str, ours: str, out_features: int,
                in_features: int) -> None:
    """A ``Linear``'s weight and bias, named ``official`` and ``ours``."""
    layout[f'{official}.weight'] = (f'{ours}.weight', (out_features,
                                                       in_features))
    layout[f'{official}.bias'] = (f'{ours}.bias', (out_features, ))


def _add_norm(layout: Layout, official: str, ours: str, channels: int) -> None:
    """A LayerNorm's or GroupNorm's weight and bias."""
    for name in ('weight', 'bias'):
        layout[f'{official}.{name}'] = (f'{ours}.{name}', (channels, ))


def _add_attention(layout: Layout, official: str, ours: str,
                   dims: int) -> None:
    """An ``nn.MultiheadAttention`` (packed q, k, v rows)."""
    layout[f'{official}.in_proj_weight'] = (f'{ours}.in_proj_weight',
                                            (3 * dims, dims))
    layout[f'{official}.in_proj_bias'] = (f'{ours}.in_proj_bias', (3 * dims, ))
    _add_linear(layout, f'{official}.out_proj', f'{ours}.out_proj', dims, dims)


def _width(task: str, official: Mapping[str, torch.Tensor], key: str,
           dim: int) -> int:
    """Dimension ``dim`` of ``official[key]``: a width the file decides."""
    if key not in official:
        raise CheckpointError(f'the official {task} head lacks {key} (found '
                              f'{len(official)} {task} keys)')
    return official[key].shape[dim]


def _map_layout(task: str, official: Mapping[str, torch.Tensor],
                layout: Layout) -> Dict[str, torch.Tensor]:
    """Every key of ``official`` renamed by ``layout``, after checking that
    the keys are exactly the layout's and every shape is the layout's."""
    unknown = [key for key in official if key not in layout]
    if unknown:
        raise CheckpointError(
            f'the official {task} head has a key visft_mm cannot place: '
            f'{unknown[0]} ({len(unknown)} unknown in total)')
    missing = [key for key in layout if key not in official]
    if missing:
        raise CheckpointError(f'the official {task} head lacks {missing[0]} '
                              f'({len(missing)} missing in total)')
    for key, tensor in official.items():
        shape = layout[key][1]
        if tuple(tensor.shape) != shape:
            raise CheckpointError(
                f'the official {task} head has {key} of shape '
                f'{tuple(tensor.shape)}; its layout needs {shape}')
    return {layout[key][0]: tensor for key, tensor in official.items()}


BACKBONE_ARCHS = {1408: 'eva-g', 1792: 'eva-e'}  # ViT width -> EVAViT arch


def key_task(key: str) -> str:
    """The task whose head an official key belongs to, as the official
    stage-2 loader decides it: ``segment`` in the key, ``caption`` in the
    key, else detection (``det_losses.*`` included)."""
    if 'segment' in key:
        return 'segmentation'
    if 'caption' in key:
        return 'caption'
    return 'detection'


# --------------------------------------------------------------------------
# Detection: UniT's DETR -> visft_mm.UniTDETR
# (configs/_base_/models/visft_detr_official.py)
# --------------------------------------------------------------------------

DETECTION_DROPPED = {
    'det_losses.empty_weight':
    'the criterion\'s class weights (ones, no-object 0.1), a constant that '
    'UniTDETRHead builds from loss_cls.bg_cls_weight',
}
# The official encoder keeps a table of 256 task tokens; the detection task
# reads row 0, and UniTDETR, whose encoder serves detection only, keeps that
# row alone.
DETECTION_TASK_INDEX = 0
DETECTION_INPUT_PROJ = 'visft_heads.input_proj.weight'
DETECTION_TASK_TOKENS = 'visft_heads.transformer.task_embeddings_enc.weight'

_ENCODER_DIMS, _DECODER_DIMS, _FFN_DIMS = 128, 256, 1024
_ENCODER_LAYERS = _DECODER_LAYERS = 6
_NUM_QUERIES, _CLASS_ROWS, _TASK_ROWS = 100, 92, 256


def detection_in_channels(official: Mapping[str, torch.Tensor]) -> int:
    """The ViT width C the detection head was trained on, read from its
    input projection (128, C, 1, 1)."""
    weight = official.get(DETECTION_INPUT_PROJ)
    if weight is None or weight.dim() != 4:
        found = 'missing' if weight is None else tuple(weight.shape)
        raise CheckpointError(
            f'not an official detection head: {DETECTION_INPUT_PROJ} '
            f'should be ({_ENCODER_DIMS}, C, 1, 1), found {found}')
    return weight.shape[1]


def detection_backbone_arch(official: Mapping[str, torch.Tensor]) -> str:
    """``'eva-g'`` (C 1408) or ``'eva-e'`` (C 1792): the EVAViT arch whose
    features the detection head takes."""
    width = detection_in_channels(official)
    if width not in BACKBONE_ARCHS:
        raise CheckpointError(
            f'{DETECTION_INPUT_PROJ} takes {width} channels, the width of '
            f'no released backbone ({BACKBONE_ARCHS})')
    return BACKBONE_ARCHS[width]


def detection_layout(in_channels: int) -> Layout:
    """Official key -> (UniTDETR key, shape) of every tensor of the official
    detection head on a ``in_channels``-wide ViT."""
    layout: Layout = {}

    def attention(src, dst, dims):  # nn.MultiheadAttention inside mmcv's
        _add_attention(layout, src, f'{dst}.attn', dims)

    def ffn(src, dst, dims):
        _add_linear(layout, f'{src}.linear1', f'{dst}.ffn.layers.0.0',
                    _FFN_DIMS, dims)
        _add_linear(layout, f'{src}.linear2', f'{dst}.ffn.layers.1', dims,
                    _FFN_DIMS)

    layout[DETECTION_INPUT_PROJ] = ('neck.convs.0.conv.weight',
                                    (_ENCODER_DIMS, in_channels, 1, 1))
    layout['visft_heads.input_proj.bias'] = ('neck.convs.0.conv.bias',
                                             (_ENCODER_DIMS, ))
    transformer = 'visft_heads.transformer'
    layout[DETECTION_TASK_TOKENS] = ('task_embedding.weight', (_TASK_ROWS,
                                                               _ENCODER_DIMS))
    for i in range(_ENCODER_LAYERS):
        src, dst = f'{transformer}.encoder.layers.{i}', f'encoder.layers.{i}'
        attention(f'{src}.self_attn', f'{dst}.self_attn', _ENCODER_DIMS)
        ffn(src, dst, _ENCODER_DIMS)
        for n in range(2):
            _add_norm(layout, f'{src}.norm{n + 1}', f'{dst}.norms.{n}',
                      _ENCODER_DIMS)
    _add_linear(layout, f'{transformer}.enc2dec_proj', 'enc2dec_proj',
                _DECODER_DIMS, _ENCODER_DIMS)
    _add_linear(layout, f'{transformer}.pos_embed_proj', 'pos_embed_proj',
                _DECODER_DIMS, _ENCODER_DIMS)
    decoder = f'{transformer}.decoders.detection.detection_coco'
    for i in range(_DECODER_LAYERS):
        src, dst = f'{decoder}.layers.{i}', f'decoder.layers.{i}'
        attention(f'{src}.self_attn', f'{dst}.self_attn', _DECODER_DIMS)
        attention(f'{src}.multihead_attn', f'{dst}.cross_attn', _DECODER_DIMS)
        ffn(src, dst, _DECODER_DIMS)
        for n in range(3):
            _add_norm(layout, f'{src}.norm{n + 1}', f'{dst}.norms.{n}',
                      _DECODER_DIMS)
    _add_norm(layout, f'{decoder}.norm', 'decoder.post_norm', _DECODER_DIMS)
    layout['visft_heads.query_embeds.detection.detection_coco.weight'] = (
        'query_embedding.weight', (_NUM_QUERIES, _DECODER_DIMS))
    _add_linear(layout, 'visft_heads.class_embeds', 'bbox_head.fc_cls',
                _CLASS_ROWS, _DECODER_DIMS)
    bbox = 'visft_heads.bbox_embeds.layers'
    _add_linear(layout, f'{bbox}.0', 'bbox_head.reg_ffn.layers.0.0',
                _DECODER_DIMS, _DECODER_DIMS)
    _add_linear(layout, f'{bbox}.1', 'bbox_head.reg_ffn.layers.1',
                _DECODER_DIMS, _DECODER_DIMS)
    _add_linear(layout, f'{bbox}.2', 'bbox_head.fc_reg', 4, _DECODER_DIMS)
    return layout


def detection_state_dict(
        official: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The state dict of ``UniTDETR`` (the ``visft_detr_official.py`` task
    model) holding the official detection head of ``official``.

    Keys of the other heads are skipped (:func:`key_task`) and
    those of ``DETECTION_DROPPED`` dropped; any other key the layout lacks,
    any key it expects that is missing and any tensor of another shape is
    named in one ``CheckpointError``.
    """
    in_channels = detection_in_channels(official)
    layout = detection_layout(in_channels)
    state, unknown, wrong_shape = {}, [], []
    for key, tensor in official.items():
        if key in DETECTION_DROPPED or key_task(key) != 'detection':
            continue
        if key not in layout:
            unknown.append(key)
            continue
        target, shape = layout[key]
        if tuple(tensor.shape) != shape:
            wrong_shape.append(
                f'{key} {tuple(tensor.shape)} (expected {shape})')
            continue
        state[target] = tensor
    missing = [key for key in layout if key not in official]
    problems = [
        f'{title} ({len(keys)}): {", ".join(keys)}'
        for title, keys in (('unknown keys', unknown),
                            ('missing keys', missing), ('wrong shapes',
                                                        wrong_shape)) if keys
    ]
    if problems:
        raise CheckpointError('the official detection head (input width '
                              f'{in_channels}) does not fit UniTDETR: ' +
                              '; '.join(problems))
    # a copy, so that a saved file does not carry the other 255 rows
    state['task_embedding.weight'] = state['task_embedding.weight'][
        DETECTION_TASK_INDEX:DETECTION_TASK_INDEX + 1].clone()
    return state


# --------------------------------------------------------------------------
# Segmentation: Mask2Former on one map, into mmdet's Mask2Former with
# visft_mm.RepeatedMapPixelDecoder and visft_mm.ShiftedLabelMask2FormerHead
# (configs/_base_/models/visft_mask2former_official.py)
# --------------------------------------------------------------------------

SEGMENTATION_PIXEL_DECODER = 'visft_heads.segment_pixel_decoder.'
SEGMENTATION_PREDICTOR = 'visft_heads.segment_predictor.'
# other names of the same tensors (the official module registers them twice)
SEGMENTATION_ALIASES = {
    'visft_heads.segment_head.pixel_decoder.': SEGMENTATION_PIXEL_DECODER,
    'visft_heads.segment_head.predictor.': SEGMENTATION_PREDICTOR,
}
SEGMENTATION_DIMS = 256
SEGMENTATION_ENCODER_LAYERS = 6
SEGMENTATION_ENCODER_FFN = 512
SEGMENTATION_DECODER_LAYERS = 9
SEGMENTATION_DECODER_FFN = 1024
SEGMENTATION_QUERIES = 100
SEGMENTATION_CLASS_ROWS = 81  # rows 0..80, see ShiftedLabelMask2FormerHead
SEGMENTATION_HEADS, SEGMENTATION_POINTS = 8, 4  # deformable attention, 1 level


def segmentation_layout(in_channels: int) -> Layout:
    """Official segmentation key -> (Mask2Former task-model key, shape), for
    a ViT map of ``in_channels`` channels."""
    d, layout = SEGMENTATION_DIMS, {}
    official, ours = SEGMENTATION_PIXEL_DECODER, 'panoptic_head.pixel_decoder.'
    layout[f'{official}input_proj.0.0.weight'] = (
        f'{ours}input_convs.0.conv.weight', (d, in_channels, 1, 1))
    layout[f'{official}input_proj.0.0.bias'] = (
        f'{ours}input_convs.0.conv.bias', (d, ))
    _add_norm(layout, f'{official}input_proj.0.1', f'{ours}input_convs.0.gn',
              d)
    layout[f'{official}transformer.level_embed'] = (
        f'{ours}level_encoding.weight', (1, d))
    for i in range(SEGMENTATION_ENCODER_LAYERS):
        src = f'{official}transformer.encoder.layers.{i}.'
        dst = f'{ours}encoder.layers.{i}.'
        samples = SEGMENTATION_HEADS * SEGMENTATION_POINTS
        _add_linear(layout, f'{src}self_attn.sampling_offsets',
                    f'{dst}self_attn.sampling_offsets', samples * 2, d)
        _add_linear(layout, f'{src}self_attn.attention_weights',
                    f'{dst}self_attn.attention_weights', samples, d)
        for proj in ('value_proj', 'output_proj'):
            _add_linear(layout, f'{src}self_attn.{proj}',
                        f'{dst}self_attn.{proj}', d, d)
        _add_linear(layout, f'{src}linear1', f'{dst}ffn.layers.0.0',
                    SEGMENTATION_ENCODER_FFN, d)
        _add_linear(layout, f'{src}linear2', f'{dst}ffn.layers.1', d,
                    SEGMENTATION_ENCODER_FFN)
        _add_norm(layout, f'{src}norm1', f'{dst}norms.0', d)
        _add_norm(layout, f'{src}norm2', f'{dst}norms.1', d)
    layout[f'{official}mask_features.weight'] = (f'{ours}mask_feature.weight',
                                                 (d, d, 1, 1))
    layout[f'{official}mask_features.bias'] = (f'{ours}mask_feature.bias',
                                               (d, ))
    # the FPN pair on the same map: lateral 1x1 and output 3x3, no bias
    layout[f'{official}adapter_1.weight'] = (
        f'{ours}lateral_convs.0.conv.weight', (d, in_channels, 1, 1))
    _add_norm(layout, f'{official}adapter_1.norm', f'{ours}lateral_convs.0.gn',
              d)
    layout[f'{official}layer_1.weight'] = (f'{ours}output_convs.0.conv.weight',
                                           (d, d, 3, 3))
    _add_norm(layout, f'{official}layer_1.norm', f'{ours}output_convs.0.gn', d)

    official, ours = SEGMENTATION_PREDICTOR, 'panoptic_head.'
    for i in range(SEGMENTATION_DECODER_LAYERS):
        dst = f'{ours}transformer_decoder.layers.{i}.'
        src = f'{official}transformer_cross_attention_layers.{i}.'
        _add_attention(layout, f'{src}multihead_attn', f'{dst}cross_attn.attn',
                       d)
        _add_norm(layout, f'{src}norm', f'{dst}norms.0', d)
        src = f'{official}transformer_self_attention_layers.{i}.'
        _add_attention(layout, f'{src}self_attn', f'{dst}self_attn.attn', d)
        _add_norm(layout, f'{src}norm', f'{dst}norms.1', d)
        src = f'{official}transformer_ffn_layers.{i}.'
        _add_linear(layout, f'{src}linear1', f'{dst}ffn.layers.0.0',
                    SEGMENTATION_DECODER_FFN, d)
        _add_linear(layout, f'{src}linear2', f'{dst}ffn.layers.1', d,
                    SEGMENTATION_DECODER_FFN)
        _add_norm(layout, f'{src}norm', f'{dst}norms.2', d)
    _add_norm(layout, f'{official}decoder_norm',
              f'{ours}transformer_decoder.post_norm', d)
    for name in ('query_feat', 'query_embed'):
        layout[f'{official}{name}.weight'] = (f'{ours}{name}.weight',
                                              (SEGMENTATION_QUERIES, d))
    layout[f'{official}level_embed.weight'] = (f'{ours}level_embed.weight',
                                               (1, d))
    _add_linear(layout, f'{official}class_embed', f'{ours}cls_embed',
                SEGMENTATION_CLASS_ROWS, d)
    for i in range(3):  # official MLP layers i = mmdet's Sequential 2i
        _add_linear(layout, f'{official}mask_embed.layers.{i}',
                    f'{ours}mask_embed.{2 * i}', d, d)
    return layout


def segmentation_canonical_keys(
    official: Mapping[str, torch.Tensor]
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The segmentation tensors of ``official`` (:func:`key_task`) under
    their ``segment_pixel_decoder``/``segment_predictor`` names, and the
    keys that repeat one of them under its other name; a tensor present
    under both names must be equal in both."""
    canonical: Dict[str, torch.Tensor] = {}
    seen_as: Dict[str, str] = {}
    repeats = []
    for key, tensor in official.items():
        if key_task(key) != 'segmentation':
            continue
        name = key
        for alias, prefix in SEGMENTATION_ALIASES.items():
            if key.startswith(alias):
                name = prefix + key[len(alias):]
        if name in canonical:
            other = canonical[name]
            if other.shape != tensor.shape or not torch.equal(other, tensor):
                raise CheckpointError(
                    f'the official segmentation head holds two different '
                    f'tensors for {name}: {seen_as[name]} and {key}')
            repeats.append(key)
            continue
        canonical[name], seen_as[name] = tensor, key
    return canonical, repeats


def segmentation_state_dict(
        official: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The segmentation task model's state dict from an official head state
    dict (keys ``panoptic_head.*`` of mmdet's ``Mask2Former``)."""
    canonical, _ = segmentation_canonical_keys(official)
    in_channels = _width('segmentation', canonical,
                         f'{SEGMENTATION_PIXEL_DECODER}input_proj.0.0.weight',
                         1)
    return _map_layout('segmentation', canonical,
                       segmentation_layout(in_channels))


# --------------------------------------------------------------------------
# Caption: Show-Attend-Tell, into visft_mm's ImageCaptioner whose
# ShowAttendTellHead uses the official parameter names
# --------------------------------------------------------------------------

CAPTION_DECODER = 'visft_heads.caption_decoder.'
CAPTION_DIMS = 384  # attention, word embedding and LSTM widths


def caption_layout(in_channels: int, vocab_size: int) -> Layout:
    """Official caption key -> (ImageCaptioner key, shape), for a ViT map of
    ``in_channels`` channels and a word map of ``vocab_size`` entries."""
    c, d, v, layout = in_channels, CAPTION_DIMS, vocab_size, {}
    official, ours = CAPTION_DECODER, 'head.'
    for name, out_features, in_features in (
        ('attention.encoder_att', d, c),
        ('attention.decoder_att', d, d),
        ('attention.full_att', 1, d),
        ('init_h', d, c),
        ('init_c', d, c),
        ('f_beta', c, d),
        ('fc', v, d),
    ):
        _add_linear(layout, official + name, ours + name, out_features,
                    in_features)
    layout[f'{official}embedding.weight'] = (f'{ours}embedding.weight', (v, d))
    for name, shape in (('weight_ih', (4 * d, d + c)), ('weight_hh', (4 * d,
                                                                      d)),
                        ('bias_ih', (4 * d, )), ('bias_hh', (4 * d, ))):
        layout[f'{official}decode_step.{name}'] = (f'{ours}decode_step.{name}',
                                                   shape)
    return layout


def caption_state_dict(
        official: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The caption task model's state dict from an official head state dict
    (keys ``head.*`` of ``ImageCaptioner``)."""
    selected = {k: v for k, v in official.items() if key_task(k) == 'caption'}
    in_channels = _width('caption', selected,
                         f'{CAPTION_DECODER}init_h.weight', 1)
    vocab_size = _width('caption', selected,
                        f'{CAPTION_DECODER}embedding.weight', 0)
    return _map_layout('caption', selected,
                       caption_layout(in_channels, vocab_size))


# --------------------------------------------------------------------------
# Released files -> one checkpoint of ViSFT task models
# --------------------------------------------------------------------------

# the word naming a released file (eva_{g,e}_<word>_heads.ckpt) -> ViSFT task
RELEASED_FILE_TASKS = {
    'detection': 'detection',
    'segment': 'segmentation',
    'caption': 'caption'
}
TASK_FILE_WORDS = {task: word for word, task in RELEASED_FILE_TASKS.items()}
TASK_STATE_DICTS = {
    'detection': detection_state_dict,
    'segmentation': segmentation_state_dict,
    'caption': caption_state_dict
}
# the task-model tensor of each task whose dimension 1 is the ViT width
TASK_VIT_INPUTS = {
    'detection': 'neck.convs.0.conv.weight',
    'segmentation': 'panoptic_head.pixel_decoder.input_convs.0.conv.weight',
    'caption': 'head.init_h.weight'
}


def zero_at_initialisation(task: str, key: str) -> bool:
    """Whether the official tensor ``key`` of ``task``'s head starts at
    exactly zero and moves in training: the biases of the norm layers, and,
    in the caption head, which has none, the word classifier's bias (which
    Show-Attend-Tell fills with 0)."""
    if task == 'caption':
        return key == f'{CAPTION_DECODER}fc.bias'
    return 'norm' in key and key.endswith('.bias')


def trained_heads(official: Mapping[str, torch.Tensor]) -> List[str]:
    """The tasks whose head in ``official`` left its initialisation. A
    released file holds every head but trained only its own; the others
    keep their initial values (optimizers skip tensors without gradients,
    and weight decay keeps a zero at zero)."""
    moved: Dict[str, bool] = {}
    for key, tensor in official.items():
        task = key_task(key)
        if zero_at_initialisation(task, key):
            moved[task] = moved.get(task, False) or bool(tensor.any())
    return [task for task, has_moved in moved.items() if has_moved]


def _key_groups(keys: List[str]) -> str:
    """``'visft_heads.transformer.* (176), det_losses.empty_weight'``: keys
    grouped by their first two names."""
    groups = Counter('.'.join(key.split('.')[:2]) for key in keys)
    return ', '.join(group if group in keys else f'{group}.* ({count})'
                     for group, count in groups.items())


def released_head(
    task: str, official: Mapping[str, torch.Tensor]
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The state dict of ``task``'s model from the released file of that
    task (``official``), and one line for each group of official keys left
    out, with the reason. Every other key is mapped, or the mapping raises.
    A file whose ``task`` head is untrained is another task's file, and a
    :class:`CheckpointError`."""
    state = TASK_STATE_DICTS[task](official)
    trained = trained_heads(official)
    if task not in trained:
        files = ' or '.join(TASK_FILE_WORDS[t] for t in trained)
        raise CheckpointError(
            f'its {task} head is as initialised (the tensors that start at '
            f'zero still are), so it is no released {TASK_FILE_WORDS[task]} '
            'file' + (f'; it looks like a {files} file' if files else ''))
    left_out = []
    if task == 'detection':
        left_out += [
            f'{key}: {reason}' for key, reason in DETECTION_DROPPED.items()
            if key in official
        ]
        rows = official[DETECTION_TASK_TOKENS].shape[0]
        left_out.append(
            f'{DETECTION_TASK_TOKENS} rows 1-{rows - 1}: the other tasks\' '
            'tokens (UniTDETR keeps row '
            f'{DETECTION_TASK_INDEX}, the detection token)')
    if task == 'segmentation':
        repeats = segmentation_canonical_keys(official)[1]
        if repeats:
            left_out.append(
                f'{_key_groups(repeats)}: the same tensors under their '
                'other names (checked equal)')
    for other in sorted({key_task(key) for key in official} - {task}):
        keys = [key for key in official if key_task(key) == other]
        left_out.append(f'{_key_groups(keys)}: the {other} head, untrained '
                        f'in a {TASK_FILE_WORDS[task]} file')
    return state, left_out


@dataclass
class ReleasedHeads:
    """Task models converted from released files: ``state_dict`` holds
    ``tasks.<task>.*`` as ``ViSFT(task_checkpoints=...)`` loads them;
    ``report`` says what came from where and what was left out, and why."""
    state_dict: Dict[str, torch.Tensor] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    vit_width: int = 0
    report: List[str] = field(default_factory=list)

    @property
    def backbone_arch(self) -> Optional[str]:
        """``'eva-g'``, ``'eva-e'``, or None for another ViT width."""
        return BACKBONE_ARCHS.get(self.vit_width)

    def checkpoint(self) -> dict:
        """The file to write: the state dict and, in its meta, the source
        files and the backbone."""
        return dict(
            meta=dict(
                official_heads=dict(self.sources),
                backbone_arch=self.backbone_arch,
                vit_width=self.vit_width),
            state_dict=self.state_dict)


def convert_released_heads(files: Mapping[str, str]) -> ReleasedHeads:
    """The heads of ``files`` (ViSFT task -> released file of that task,
    any non-empty subset), each task taken from its own file as the
    official stage-2 loader does. All heads must take the same ViT width.
    Any file that does not fit is a :class:`CheckpointError` naming it."""
    if not files:
        raise CheckpointError('no released head file given')
    heads, widths = ReleasedHeads(), {}
    for task, path in files.items():
        official = load_model_state_dict(path)
        try:
            state, left_out = released_head(task, official)
        except CheckpointError as e:
            raise CheckpointError(f'{path}: {e}') from None
        widths[task] = state[TASK_VIT_INPUTS[task]].shape[1]
        heads.sources[task] = os.fspath(path)
        heads.state_dict.update({
            f'tasks.{task}.{key}': value
            for key, value in state.items()
        })
        details = f'{len(state)} tensors'
        if task == 'caption':
            details += (f', a word map of '
                        f'{state["head.embedding.weight"].shape[0]} words')
        heads.report.append(f'{task}: {path} -> tasks.{task}.* ({details})')
        heads.report += [f'  left out {line}' for line in left_out]
    if len(set(widths.values())) > 1:
        raise CheckpointError(
            'the heads were trained on ViTs of different widths: ' +
            ', '.join(f'{task} {width}' for task, width in widths.items()))
    heads.vit_width = next(iter(widths.values()))
    return heads
