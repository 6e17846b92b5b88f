"""Key mappings from the released ViSFT stage-1 heads to visft_mm task models.

The released files (``eva_{g,e}_{caption,detection,segment}_heads.ckpt``,
Hugging Face ``TencentARC/ViSFT``) are plain state dicts of the whole
official head model; a stage-1 file holds every head, of which only its own
task was trained. Each mapping turns the tensors of one head into the state
dict of one visft_mm task model (keys relative to the task model, as
``ViSFT(task_checkpoints=...)`` loads them under ``tasks.<task>.``) and
fails with one error naming every key or shape it cannot place.
"""
from typing import Dict, Mapping, Tuple

import torch

from visft_mm.utils.checkpoint import CheckpointError

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


def detection_layout(
        in_channels: int) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
    """Official key -> (UniTDETR key, shape) of every tensor of the official
    detection head on a ``in_channels``-wide ViT."""
    layout = {}

    def linear(src, dst, out_dims, in_dims):
        layout[f'{src}.weight'] = (f'{dst}.weight', (out_dims, in_dims))
        layout[f'{src}.bias'] = (f'{dst}.bias', (out_dims, ))

    def layer_norm(src, dst, dims):
        layout[f'{src}.weight'] = (f'{dst}.weight', (dims, ))
        layout[f'{src}.bias'] = (f'{dst}.bias', (dims, ))

    def attention(src, dst, dims):  # nn.MultiheadAttention inside mmcv's
        layout[f'{src}.in_proj_weight'] = (f'{dst}.attn.in_proj_weight',
                                           (3 * dims, dims))
        layout[f'{src}.in_proj_bias'] = (f'{dst}.attn.in_proj_bias',
                                         (3 * dims, ))
        linear(f'{src}.out_proj', f'{dst}.attn.out_proj', dims, dims)

    def ffn(src, dst, dims):
        linear(f'{src}.linear1', f'{dst}.ffn.layers.0.0', _FFN_DIMS, dims)
        linear(f'{src}.linear2', f'{dst}.ffn.layers.1', dims, _FFN_DIMS)

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
            layer_norm(f'{src}.norm{n + 1}', f'{dst}.norms.{n}', _ENCODER_DIMS)
    linear(f'{transformer}.enc2dec_proj', 'enc2dec_proj', _DECODER_DIMS,
           _ENCODER_DIMS)
    linear(f'{transformer}.pos_embed_proj', 'pos_embed_proj', _DECODER_DIMS,
           _ENCODER_DIMS)
    decoder = f'{transformer}.decoders.detection.detection_coco'
    for i in range(_DECODER_LAYERS):
        src, dst = f'{decoder}.layers.{i}', f'decoder.layers.{i}'
        attention(f'{src}.self_attn', f'{dst}.self_attn', _DECODER_DIMS)
        attention(f'{src}.multihead_attn', f'{dst}.cross_attn', _DECODER_DIMS)
        ffn(src, dst, _DECODER_DIMS)
        for n in range(3):
            layer_norm(f'{src}.norm{n + 1}', f'{dst}.norms.{n}', _DECODER_DIMS)
    layer_norm(f'{decoder}.norm', 'decoder.post_norm', _DECODER_DIMS)
    layout['visft_heads.query_embeds.detection.detection_coco.weight'] = (
        'query_embedding.weight', (_NUM_QUERIES, _DECODER_DIMS))
    linear('visft_heads.class_embeds', 'bbox_head.fc_cls', _CLASS_ROWS,
           _DECODER_DIMS)
    bbox = 'visft_heads.bbox_embeds.layers'
    linear(f'{bbox}.0', 'bbox_head.reg_ffn.layers.0.0', _DECODER_DIMS,
           _DECODER_DIMS)
    linear(f'{bbox}.1', 'bbox_head.reg_ffn.layers.1', _DECODER_DIMS,
           _DECODER_DIMS)
    linear(f'{bbox}.2', 'bbox_head.fc_reg', 4, _DECODER_DIMS)
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
