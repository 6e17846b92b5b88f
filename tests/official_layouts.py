"""Random state dicts in the layout of the released ViSFT stage-1 heads
(official_heads.md), at any ViT width: each head on its own, as the parity
tests use them, and whole released files, which hold every head but trained
only their own."""
import functools
import math

import torch

HEADS = 'visft_heads.'
DET_TRANSFORMER = HEADS + 'transformer.'
DET_DECODER = DET_TRANSFORMER + 'decoders.detection.detection_coco.'
SEG_PIXEL = HEADS + 'segment_pixel_decoder.'
SEG_PREDICTOR = HEADS + 'segment_predictor.'
CAPTION_DECODER = HEADS + 'caption_decoder.'
CAPTION_DIMS = 384  # official attention, embedding and LSTM widths


def detection_shapes(width):
    """Key -> shape of the official detection head (official_heads.md,
    "Detection"), plus a key of each other head and the criterion buffer."""
    shapes = {
        HEADS + 'input_proj.weight': (128, width, 1, 1),
        HEADS + 'input_proj.bias': (128, ),
        DET_TRANSFORMER + 'task_embeddings_enc.weight': (256, 128),
        HEADS + 'query_embeds.detection.detection_coco.weight': (100, 256),
        HEADS + 'class_embeds.weight': (92, 256),
        HEADS + 'class_embeds.bias': (92, ),
        'det_losses.empty_weight': (92, ),
        HEADS + 'segment_predictor.decoder_norm.weight': (256, ),
        HEADS + 'caption_decoder.fc.bias': (9490, ),
    }
    for name in ('enc2dec_proj', 'pos_embed_proj'):
        shapes.update({
            DET_TRANSFORMER + name + '.weight': (256, 128),
            DET_TRANSFORMER + name + '.bias': (256, )
        })
    for i, (out_dims, in_dims) in enumerate([(256, 256), (256, 256),
                                             (4, 256)]):
        shapes[f'{HEADS}bbox_embeds.layers.{i}.weight'] = (out_dims, in_dims)
        shapes[f'{HEADS}bbox_embeds.layers.{i}.bias'] = (out_dims, )
    for prefix, dims, attentions, norms in ((DET_TRANSFORMER +
                                             'encoder.layers.', 128,
                                             ['self_attn'], 2),
                                            (DET_DECODER + 'layers.', 256,
                                             ['self_attn',
                                              'multihead_attn'], 3)):
        for i in range(6):
            layer = f'{prefix}{i}.'
            for attn in attentions:
                shapes[layer + attn + '.in_proj_weight'] = (3 * dims, dims)
                shapes[layer + attn + '.in_proj_bias'] = (3 * dims, )
                shapes[layer + attn + '.out_proj.weight'] = (dims, dims)
                shapes[layer + attn + '.out_proj.bias'] = (dims, )
            shapes[layer + 'linear1.weight'] = (1024, dims)
            shapes[layer + 'linear1.bias'] = (1024, )
            shapes[layer + 'linear2.weight'] = (dims, 1024)
            shapes[layer + 'linear2.bias'] = (dims, )
            for n in range(1, norms + 1):
                shapes[f'{layer}norm{n}.weight'] = (dims, )
                shapes[f'{layer}norm{n}.bias'] = (dims, )
    shapes[DET_DECODER + 'norm.weight'] = shapes[DET_DECODER +
                                                 'norm.bias'] = (256, )
    return shapes


def random_detection(width, seed=0):
    """A fresh dict (tensors shared) of :func:`_cached_random_detection`."""
    return dict(_cached_random_detection(width, seed))


@functools.lru_cache(maxsize=None)
def _cached_random_detection(width, seed):
    """Random values in every tensor, spread so that queries differ yet fp32
    stays within 1e-6 of fp64: query embeddings N(0, 9), the task token
    N(0, 1), matrices N(0, 1/fan_in), vectors N(0, 0.01) (layer-norm
    weights about 1)."""
    gen = torch.Generator().manual_seed(seed)
    official = {}
    for key, shape in detection_shapes(width).items():
        value = torch.randn(shape, generator=gen)
        if 'query_embeds' in key:
            value = 3 * value
        elif len(shape) > 1 and 'task_embeddings' not in key:
            value = value / math.sqrt(math.prod(shape[1:]))
        elif len(shape) == 1:
            value = 0.1 * value + ('norm' in key and key.endswith('weight'))
        official[key] = value
    return official


def segmentation_shapes(c: int) -> dict:
    """Key -> shape of the official segmentation head (research notes,
    "Segmentation"), for a ViT map of ``c`` channels."""
    shapes = {
        f'{SEG_PIXEL}input_proj.0.0.weight': (256, c, 1, 1),
        f'{SEG_PIXEL}input_proj.0.0.bias': (256, ),
        f'{SEG_PIXEL}input_proj.0.1.weight': (256, ),
        f'{SEG_PIXEL}input_proj.0.1.bias': (256, ),
        f'{SEG_PIXEL}transformer.level_embed': (1, 256),
        f'{SEG_PIXEL}mask_features.weight': (256, 256, 1, 1),
        f'{SEG_PIXEL}mask_features.bias': (256, ),
        f'{SEG_PIXEL}adapter_1.weight': (256, c, 1, 1),
        f'{SEG_PIXEL}adapter_1.norm.weight': (256, ),
        f'{SEG_PIXEL}adapter_1.norm.bias': (256, ),
        f'{SEG_PIXEL}layer_1.weight': (256, 256, 3, 3),
        f'{SEG_PIXEL}layer_1.norm.weight': (256, ),
        f'{SEG_PIXEL}layer_1.norm.bias': (256, ),
        f'{SEG_PREDICTOR}decoder_norm.weight': (256, ),
        f'{SEG_PREDICTOR}decoder_norm.bias': (256, ),
        f'{SEG_PREDICTOR}query_feat.weight': (100, 256),
        f'{SEG_PREDICTOR}query_embed.weight': (100, 256),
        f'{SEG_PREDICTOR}level_embed.weight': (1, 256),
        f'{SEG_PREDICTOR}class_embed.weight': (81, 256),
        f'{SEG_PREDICTOR}class_embed.bias': (81, ),
    }
    linears = {}
    for i in range(6):
        layer = f'{SEG_PIXEL}transformer.encoder.layers.{i}.'
        linears.update({
            f'{layer}self_attn.sampling_offsets': (64, 256),
            f'{layer}self_attn.attention_weights': (32, 256),
            f'{layer}self_attn.value_proj': (256, 256),
            f'{layer}self_attn.output_proj': (256, 256),
            f'{layer}linear1': (512, 256),
            f'{layer}linear2': (256, 512),
            f'{layer}norm1': (256, ),
            f'{layer}norm2': (256, ),
        })
    for i in range(9):
        for kind, attn in (('cross', 'multihead_attn'), ('self', 'self_attn')):
            layer = f'{SEG_PREDICTOR}transformer_{kind}_attention_layers.{i}.'
            shapes[f'{layer}{attn}.in_proj_weight'] = (768, 256)
            shapes[f'{layer}{attn}.in_proj_bias'] = (768, )
            linears[f'{layer}{attn}.out_proj'] = (256, 256)
            linears[f'{layer}norm'] = (256, )
        layer = f'{SEG_PREDICTOR}transformer_ffn_layers.{i}.'
        linears.update({
            f'{layer}linear1': (1024, 256),
            f'{layer}linear2': (256, 1024),
            f'{layer}norm': (256, ),
        })
    for i in range(3):
        linears[f'{SEG_PREDICTOR}mask_embed.layers.{i}'] = (256, 256)
    for name, weight_shape in linears.items():
        shapes[f'{name}.weight'] = weight_shape
        shapes[f'{name}.bias'] = weight_shape[:1]
    return shapes


def random_segmentation(c: int, seed: int = 0) -> dict:
    """Random values in every official tensor, scaled so that activations
    stay of order one: weights ~ N(0, 1/fan_in), norm scales near 1, and the
    last mask-embedding layer 1/16 of that, so that mask logits (sums over
    256 channels) are of order one too and fp32 rounding stays below 1e-5."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in segmentation_shapes(c).items():
        values = torch.randn(shape, generator=generator)
        if len(shape) > 1:
            values /= math.sqrt(math.prod(shape[1:]))
        elif 'norm' in key and key.endswith('weight'):
            values = 1 + 0.1 * values
        else:
            values *= 0.1
        state[key] = values
    state[f'{SEG_PREDICTOR}mask_embed.layers.2.weight'] /= 16
    return state


def caption_shapes(c: int, v: int) -> dict:
    """Key -> shape of the official caption head (research notes,
    "Caption"), for a ViT map of ``c`` channels and ``v`` words."""
    d = CAPTION_DIMS
    shapes = {
        'embedding.weight': (v, d),
        'decode_step.weight_ih': (4 * d, d + c),
        'decode_step.weight_hh': (4 * d, d),
        'decode_step.bias_ih': (4 * d, ),
        'decode_step.bias_hh': (4 * d, ),
    }
    for name, weight in (('attention.encoder_att',
                          (d, c)), ('attention.decoder_att', (d, d)),
                         ('attention.full_att', (1, d)), ('init_h', (d, c)),
                         ('init_c', (d, c)), ('f_beta', (c, d)), ('fc', (v,
                                                                         d))):
        shapes[f'{name}.weight'], shapes[f'{name}.bias'] = weight, weight[:1]
    return {CAPTION_DECODER + k: shape for k, shape in shapes.items()}


def random_caption(c: int, v: int, seed: int = 0) -> dict:
    """Random values in every official tensor: weights ~ N(0, 1/fan_in),
    biases and word embeddings ~ N(0, 0.1^2)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in caption_shapes(c, v).items():
        values = torch.randn(shape, generator=generator)
        state[key] = (
            values / math.sqrt(shape[1])
            if len(shape) > 1 and 'embedding' not in key else values * 0.1)
    return state


# the second name the official module registers the segmentation tensors under
SEG_ALIASES = {
    SEG_PIXEL: HEADS + 'segment_head.pixel_decoder.',
    SEG_PREDICTOR: HEADS + 'segment_head.predictor.',
}


def as_initialised(head: dict) -> dict:
    """New tensors for ``head`` as the official model starts them: norm
    layers weight 1 and bias 0, attention biases 0, the caption classifier's
    bias 0 (Show-Attend-Tell's init); the rest keeps its random values."""
    initial = {}
    for key, value in head.items():
        if 'norm' in key or '.input_proj.0.1.' in key:
            value = torch.full_like(value, float(key.endswith('weight')))
        elif key.endswith(('in_proj_bias', 'out_proj.bias', 'fc.bias')):
            value = torch.zeros_like(value)
        initial[key] = value
    return initial


def released_file(kind: str, width: int, vocab: int, seed: int = 0) -> dict:
    """A released file of ``kind`` (a ViSFT task) for a ViT ``width`` wide and
    a word map of ``vocab`` words: every head, only ``kind``'s trained, the
    segmentation tensors under both their names, and the detection
    criterion's class weights."""
    heads = dict(
        detection=random_detection(width, seed),
        segmentation=random_segmentation(width, seed),
        caption=random_caption(width, vocab, seed))
    official = {}
    for task, head in heads.items():  # later heads replace the stray keys
        official.update(head if task == kind else as_initialised(head))
    official['det_losses.empty_weight'] = torch.cat(
        [torch.ones(91), torch.tensor([0.1])])
    for prefix, alias in SEG_ALIASES.items():
        official.update({
            alias + key[len(prefix):]: value
            for key, value in list(official.items()) if key.startswith(prefix)
        })
    return official
