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

The layouts are written out here from the official module tree (no OpenMMLab
package knows these names); the modules they load into are mmdet's and
visft_mm's.
"""
from typing import Dict, Mapping, Tuple

import torch

from visft_mm.checkpoints.io import CheckpointError

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


# --------------------------------------------------------------------------
# Detection: UniT's DETR -> visft_mm.UniTDETR
# (configs/_base_/models/visft_detr_official.py)
# --------------------------------------------------------------------------

DETECTION_BACKBONE_ARCHS = {1408: 'eva-g', 1792: 'eva-e'}
# Keys holding these words belong to the other heads; the official stage-2
# loader takes them from their own files, and so do their mappings.
DETECTION_OTHER_HEADS = ('segment', 'caption')
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
    if width not in DETECTION_BACKBONE_ARCHS:
        raise CheckpointError(
            f'{DETECTION_INPUT_PROJ} takes {width} channels, the width of '
            f'no released backbone ({DETECTION_BACKBONE_ARCHS})')
    return DETECTION_BACKBONE_ARCHS[width]


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
    layout[f'{transformer}.task_embeddings_enc.weight'] = (
        'task_embedding.weight', (_TASK_ROWS, _ENCODER_DIMS))
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

    Keys of the other heads are skipped (``DETECTION_OTHER_HEADS``) and
    those of ``DETECTION_DROPPED`` dropped; any other key the layout lacks,
    any key it expects that is missing and any tensor of another shape is
    named in one ``CheckpointError``.
    """
    in_channels = detection_in_channels(official)
    layout = detection_layout(in_channels)
    state, unknown, wrong_shape = {}, [], []
    for key, tensor in official.items():
        if key in DETECTION_DROPPED or any(head in key
                                           for head in DETECTION_OTHER_HEADS):
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
    state['task_embedding.weight'] = state['task_embedding.weight'][
        DETECTION_TASK_INDEX:DETECTION_TASK_INDEX + 1]
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
        official: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The segmentation tensors of ``official`` (keys containing
    ``segment``) under their ``segment_pixel_decoder``/``segment_predictor``
    names; a tensor present under both names must be equal in both."""
    canonical: Dict[str, torch.Tensor] = {}
    seen_as: Dict[str, str] = {}
    for key, tensor in official.items():
        if 'segment' not in key:
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
            continue
        canonical[name], seen_as[name] = tensor, key
    return canonical


def segmentation_state_dict(
        official: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The segmentation task model's state dict from an official head state
    dict (keys ``panoptic_head.*`` of mmdet's ``Mask2Former``)."""
    canonical = segmentation_canonical_keys(official)
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
    selected = {k: v for k, v in official.items() if 'caption' in k}
    in_channels = _width('caption', selected,
                         f'{CAPTION_DECODER}init_h.weight', 1)
    vocab_size = _width('caption', selected,
                        f'{CAPTION_DECODER}embedding.weight', 0)
    return _map_layout('caption', selected,
                       caption_layout(in_channels, vocab_size))
