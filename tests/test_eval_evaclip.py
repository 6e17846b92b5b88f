"""EVA-CLIP out-of-domain benchmarks (configs/visft/eval/).

Every config runs through tools/test.py, shrunk by a child config to a tiny
EVA-CLIP, on generated data in the benchmark's own file layout. The tiny
checkpoint's projection head is solved so that each image embeds exactly as
the prompt of its true class (zero-shot) or its caption (retrieval), known
from the generator, not from the code under test: top-1 and Recall@1 must
then be 100. Also: parity with open_clip's EVA model,
``Numpy2RetrievalRecall`` against a hand computation, backbone replacement and
missing-asset errors.
"""
import json
import re
import runpy
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import (DATASETS, MODELS, DefaultScope,
                               init_default_scope)
from mmpretrain.datasets.categories import IMAGENET_SIMPLE_CATEGORIES
from mmpretrain.structures import DataSample
from open_clip import get_model_config
from open_clip.model import _build_text_tower
from PIL import Image
from tiny_clip import (EMBED_DIM, TINY_TEXT, tiny_arch, tiny_clip,
                       tiny_clip_state_dict)

from visft_mm.benchmarks import EVACLIP, Numpy2RetrievalRecall
from visft_mm.benchmarks.imagenet_variants import (IMAGENET_SYNSETS,
                                                   imagenet_class_names,
                                                   imagenet_variant_folders)
from visft_mm.checkpoints.io import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
EVAL_CONFIGS = ROOT / 'configs/visft/eval'
sys.path.insert(0, str(ROOT / 'tools/analysis_tools'))
from compare_visft import latest_metrics  # noqa: E402

# Benchmark → (dataset variant, the class folders, by position in the variant's
# folder list, that get an image). ImageNet-V2's folders 2, 10, 100 sort
# differently as strings; ImageNet-A/R have 200 of the 1000 classes.
ZERO_SHOT = {
    'imagenet': ('imagenet', [3, 500, 999]),
    'imagenet_v2': ('imagenet-v2', [2, 10, 100]),
    'imagenet_sketch': ('imagenet-sketch', [0, 437, 999]),
    'imagenet_a': ('imagenet-a', [0, 57, 199]),
    'imagenet_r': ('imagenet-r', [0, 101, 199]),
}
RETRIEVAL = ('coco', 'flickr30k')
NUM_RETRIEVAL_IMAGES = 10  # Recall@10 needs at least 10 candidates


@pytest.fixture(autouse=True)
def restore_default_scope():
    """Runners leave the mmpretrain scope current; put back what was there."""
    previous = DefaultScope.get_current_instance()
    yield
    if previous is not None:
        DefaultScope.get_instance(
            f'restore-{uuid.uuid4().hex}', scope_name=previous.scope_name)


# ------------------------------------------------------------------ assets
def save_image(path: Path, seed: int) -> None:
    """A random 48x64 JPEG (not square, so resize and crop both act)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(
        0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_imagenet_val(root: Path, labels) -> dict:
    """mmpretrain's ImageNet layout with an annotation file (val/*.JPEG,
    meta/val.txt, labels are ImageNet-1k indices); image name → class name."""
    lines, truth = [], {}
    for i, label in enumerate(labels):
        name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        save_image(root / 'val' / name, seed=i)
        lines.append(f'{name} {label}')
        truth[name] = IMAGENET_SIMPLE_CATEGORIES[label]
    (root / 'meta').mkdir()
    (root / 'meta/val.txt').write_text('\n'.join(lines) + '\n')
    return truth


def make_imagenet_variant(root: Path, variant: str, positions) -> dict:
    """Every class folder of the variant, images in those at ``positions``;
    image name → class name (folders name ImageNet-1k classes by index for
    ImageNet-V2, by WordNet id for the others)."""
    folders = imagenet_variant_folders(variant)
    for folder in folders:
        (root / folder).mkdir(parents=True)
    truth = {}
    for i, position in enumerate(positions):
        folder = folders[position]
        name = f'image_{i}.jpg'
        save_image(root / folder / name, seed=i)
        index = int(
            folder) if variant == 'imagenet-v2' else IMAGENET_SYNSETS.index(
                folder)
        truth[name] = IMAGENET_SIMPLE_CATEGORIES[index]
    (root /
     'README.txt').write_text('files next to the class folders are ignored\n')
    return truth


def retrieval_captions(index: int):
    """Two captions per image that the CLIP tokenizer (lower-casing) reads
    alike."""
    return [
        f'a photo of thing number {index}', f'A Photo of Thing Number {index}'
    ]


def make_coco_karpathy(root: Path) -> dict:
    """mmpretrain's COCO retrieval layout: Karpathy test split in COCO format
    (images found through ``coco_url``), images in val2014/; image name →
    caption."""
    images, annotations, truth = [], [], {}
    for i in range(NUM_RETRIEVAL_IMAGES):
        name = f'COCO_val2014_{1000 + i:012d}.jpg'
        save_image(root / 'val2014' / name, seed=i)
        truth[name] = retrieval_captions(i)[0]
        images.append(
            dict(
                id=1000 + i,
                file_name=name,
                coco_url=f'http://images.cocodataset.org/val2014/{name}'))
        annotations += [
            dict(image_id=1000 + i, id=10 * i + j, caption=caption)
            for j, caption in enumerate(retrieval_captions(i))
        ]
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations/caption_karpathy_test2014.json').write_text(
        json.dumps(dict(images=images, annotations=annotations)))
    return truth


def make_flickr30k_karpathy(root: Path) -> dict:
    """Karpathy's dataset_flickr30k.json layout, images in images/, and two
    train images that the test split must leave out; image name → caption."""
    entries, sentence_id, truth = [], 0, {}
    for i in range(NUM_RETRIEVAL_IMAGES + 2):
        name = f'{100000 + i}.jpg'
        save_image(root / 'images' / name, seed=i)
        truth[name] = retrieval_captions(i)[0]
        sentences = []
        for caption in retrieval_captions(i):
            sentences.append(
                dict(
                    raw=caption,
                    tokens=caption.lower().split(),
                    imgid=i,
                    sentid=sentence_id))
            sentence_id += 1
        entries.append(
            dict(
                filename=name,
                imgid=i,
                sentids=[s['sentid'] for s in sentences],
                sentences=sentences,
                split='test' if i < NUM_RETRIEVAL_IMAGES else 'train'))
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations/dataset_flickr30k.json').write_text(
        json.dumps(dict(images=entries, dataset='flickr30k')))
    return truth


def tiny_config(tmp_path: Path, config: str, size: str, clip_path: Path,
                data_root: Path) -> Path:
    """A child of the real config with the tiny model and the generated data;
    the backbone still comes from the real config's $BACKBONE_CHECKPOINT."""
    path = tmp_path / f'tiny_{config}'
    path.write_text(f'''
_base_ = {str(EVAL_CONFIGS / config)!r}
model = dict(clip_checkpoint={str(clip_path)!r},
             vision_arch=dict(_delete_=True, **{tiny_arch(size)!r}),
             embed_dim={EMBED_DIM}, text_cfg={TINY_TEXT!r},
             prompt_templates='vanilla')
test_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={str(data_root)!r}))
''')
    return path


def solve_projection_head(config: Path, clip_state: dict, clip_path: Path,
                          truth: dict, text_embedding) -> None:
    """Rewrite ``visual.head`` of the checkpoint so that each benchmark image
    embeds exactly as ``text_embedding(model, truth[image name])`` (image
    features through the config's real pipeline and preprocessor)."""
    torch.save(clip_state, clip_path)
    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    with torch.no_grad():
        batch = model.data_preprocessor(
            default_collate([dataset[i] for i in range(len(dataset))]))
        image_feats = model.visual(
            batch['images'])[0].double()  # (N, C), N <= C
        names = [
            Path(dataset.get_data_info(i)['img_path']).name
            for i in range(len(dataset))
        ]
        targets = torch.stack(
            [text_embedding(model, truth[name]) for name in names]).double()
    head = (torch.linalg.pinv(image_feats)
            @ targets).t()  # head @ feat_i = target_i
    torch.save(
        {
            **clip_state, 'visual.head.weight': head.float(),
            'visual.head.bias': torch.zeros(EMBED_DIM)
        }, clip_path)


def class_prompt_embedding(model: EVACLIP, class_name: str) -> torch.Tensor:
    return model.build_class_embeddings([class_name])[0]


def caption_embedding(model: EVACLIP, caption: str) -> torch.Tensor:
    return F.normalize(model.extract_text_feat([caption]), dim=-1)[0]


def run_test_tool(monkeypatch, config: Path, work_dir: Path, *options:
                  str) -> dict:
    """``python tools/test.py CONFIG --work-dir DIR [options]`` in this
    process; the metrics it logged."""
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv(
        'BACKBONE_CHECKPOINT',
        raising=False)  # each run's comes from --backbone
    monkeypatch.setattr(
        sys, 'argv',
        ['tools/test.py',
         str(config), '--work-dir',
         str(work_dir), *options])
    runpy.run_path(str(ROOT / 'tools/test.py'), run_name='__main__')
    return latest_metrics(work_dir)


# ------------------------------------------------------------- end to end
@pytest.mark.parametrize('size', ['g', 'e'])
@pytest.mark.parametrize('benchmark', list(ZERO_SHOT))
def test_zero_shot_config_scores_the_known_answer(benchmark, size, tmp_path,
                                                  monkeypatch):
    config = f'evaclip_{size}_zeroshot_{benchmark}.py'
    variant, positions = ZERO_SHOT[benchmark]
    data_root = tmp_path / 'data'
    if variant == 'imagenet':
        truth = make_imagenet_val(data_root, positions)
    else:
        truth = make_imagenet_variant(data_root, variant, positions)
    clip_path = tmp_path / 'tiny_clip.pth'
    tiny = tiny_config(tmp_path, config, size, clip_path, data_root)
    solve_projection_head(tiny, tiny_clip_state_dict(size), clip_path, truth,
                          class_prompt_embedding)

    metrics = run_test_tool(monkeypatch, tiny, tmp_path / 'work')
    assert metrics['accuracy/top1'] == pytest.approx(100.0)


@pytest.mark.parametrize('size', ['g', 'e'])
@pytest.mark.parametrize('benchmark', RETRIEVAL)
def test_retrieval_config_scores_the_known_answer(benchmark, size, tmp_path,
                                                  monkeypatch):
    data_root = tmp_path / 'data'
    truth = (make_coco_karpathy
             if benchmark == 'coco' else make_flickr30k_karpathy)(
                 data_root)
    clip_path = tmp_path / 'tiny_clip.pth'
    tiny = tiny_config(tmp_path, f'evaclip_{size}_retrieval_{benchmark}.py',
                       size, clip_path, data_root)
    solve_projection_head(tiny, tiny_clip_state_dict(size), clip_path, truth,
                          caption_embedding)

    metrics = run_test_tool(monkeypatch, tiny, tmp_path / 'work')
    for direction in ('i2t', 't2i'):
        assert metrics[f'{direction}/retrieval/Recall@1'] == pytest.approx(
            100.0)
        assert metrics[f'{direction}/retrieval/Recall@10'] == pytest.approx(
            100.0)


def test_backbone_flag_replaces_the_vision_trunk(tmp_path, monkeypatch):
    """--backbone with the CLIP model's own trunk in our layout, as
    eva2visft.py writes LAVIS's eva_vit_g.pth (no cls_token, no final norm):
    the CLIP file's cls token, position table, norm and head apply, so the
    known answer stays. A backbone with other weights supplies patch_embed,
    blocks and norm, as visft2evaclip.py exports it; an unmerged LoRA is
    refused."""
    data_root = tmp_path / 'data'
    truth = make_coco_karpathy(data_root)
    clip_path = tmp_path / 'tiny_clip.pth'
    tiny = tiny_config(tmp_path, 'evaclip_g_retrieval_coco.py', 'g', clip_path,
                       data_root)
    clip_state = tiny_clip_state_dict('g')
    solve_projection_head(tiny, clip_state, clip_path, truth,
                          caption_embedding)
    backbone = {
        k[len('visual.'):]: v
        for k, v in clip_state.items()
        if k.startswith('visual.') and not k.startswith(
            ('visual.head.', 'visual.norm.', 'visual.cls_token'))
    }
    torch.save(backbone, tmp_path / 'backbone.pth')

    metrics = run_test_tool(monkeypatch, tiny, tmp_path / 'work', '--backbone',
                            str(tmp_path / 'backbone.pth'))
    assert metrics['i2t/retrieval/Recall@1'] == pytest.approx(100.0)
    assert metrics['t2i/retrieval/Recall@1'] == pytest.approx(100.0)

    other = {k: v + 0.5 for k, v in backbone.items()}
    other.update({
        'norm.weight': torch.full((32, ), 2.0),
        'norm.bias': torch.ones(32)
    })
    torch.save(other, tmp_path / 'other.pth')
    model = tiny_clip(
        'g',
        clip_checkpoint=str(clip_path),
        backbone_checkpoint=str(tmp_path / 'other.pth'))
    loaded = model.visual.state_dict()
    for key, value in other.items():
        from_backbone = not key.startswith(('cls_token', 'pos_embed'))
        expected = value if from_backbone else clip_state[f'visual.{key}']
        assert torch.equal(loaded[key], expected), key
    assert torch.equal(loaded['cls_token'], clip_state['visual.cls_token'])

    other['blocks.0.attn.qkv.lora_A'] = torch.zeros(4, 32)
    other['blocks.0.attn.qkv.lora_B'] = torch.zeros(96, 2)
    torch.save(other, tmp_path / 'lora.pth')
    with pytest.raises(CheckpointError, match='LoRA tensors.*merge_lora.py'):
        tiny_clip(
            'g',
            clip_checkpoint=str(clip_path),
            backbone_checkpoint=str(tmp_path / 'lora.pth'))


def test_configs_name_the_paper_models_and_benchmarks():
    configs = sorted(EVAL_CONFIGS.glob('evaclip_*.py'))
    assert len(configs) == 2 * (len(ZERO_SHOT) + len(RETRIEVAL))
    for path in configs:
        cfg = Config.fromfile(str(path))
        size = path.name.split('_')[1]
        assert cfg.default_scope == 'mmpretrain'
        assert cfg.model.type == 'visft_mm.EVACLIP'
        assert cfg.model.vision_arch == {'g': 'eva-g', 'e': 'eva-e'}[size]
        assert cfg.model.open_clip_model == {
            'g': 'EVA01-g-14',
            'e': 'EVA02-E-14-plus'
        }[size]
        assert cfg.model.clip_checkpoint == 'checkpoints/' + {
            'g': 'EVA01_CLIP_g_14_psz14_s11B.pt',
            'e': 'EVA02_CLIP_E_psz14_plus_s9B.pt'
        }[size]
        # None: the CLIP file's own vision tower.
        assert cfg.model.backbone_checkpoint is cfg.backbone_checkpoint is None
        resize, crop = cfg.test_dataloader.dataset.pipeline[1:3]
        assert (resize.type, resize.scale, resize.edge,
                resize.interpolation) == ('ResizeEdge', 224, 'short',
                                          'bicubic')
        assert (crop.type, crop.crop_size) == ('CenterCrop', 224)
        if 'zeroshot' in path.name:
            variant = ZERO_SHOT[path.stem.split('zeroshot_')[1]][0]
            assert cfg.model.prompt_templates == 'openai_imagenet'
            assert cfg.model.class_names == (
                variant if variant in ('imagenet-a',
                                       'imagenet-r') else 'imagenet')
        else:
            assert cfg.test_cfg.type == 'RetrievalTestLoop'


# ------------------------------------------------------------------ parts
@pytest.mark.parametrize('size', ['g', 'e'])
def test_embeddings_match_open_clip_eva(size, tmp_path, monkeypatch):
    """open_clip's EVA CLIP (timm Eva trunk, weights converted from the
    original layout by timm's checkpoint_filter_fn) embeds images and texts
    as ours does."""
    import open_clip
    from timm.models.eva import Eva, checkpoint_filter_fn

    arch = tiny_arch(size)
    clip_state = tiny_clip_state_dict(size)
    torch.save(clip_state, tmp_path / 'clip.pth')
    ours = tiny_clip(size, clip_checkpoint=str(tmp_path / 'clip.pth')).eval()

    def tiny_eva(model_name, num_classes, global_pool, pretrained, **kwargs):
        return Eva(
            img_size=224,
            patch_size=14,
            embed_dim=arch['embed_dims'],
            depth=arch['num_layers'],
            num_heads=arch['num_heads'],
            mlp_ratio=arch['feedforward_channels'] / arch['embed_dims'],
            use_post_norm=arch['post_norm'],
            num_classes=num_classes,
            global_pool=global_pool)

    monkeypatch.setattr(open_clip.timm_model.timm, 'create_model', tiny_eva)
    name = 'EVA01-g-14' if size == 'g' else 'EVA02-E-14-plus'
    config = get_model_config(name)
    reference = open_clip.model.CustomTextCLIP(EMBED_DIM, config['vision_cfg'],
                                               {
                                                   **config['text_cfg'],
                                                   **TINY_TEXT
                                               }).eval()
    trunk = checkpoint_filter_fn(clip_state, reference.visual.trunk)
    reference.load_state_dict(
        {
            **{
                f'visual.trunk.{k}': v
                for k, v in trunk.items()
            },
            **{
                k: v
                for k, v in clip_state.items() if not k.startswith('visual.')
            }
        },
        strict=True)

    images = torch.randn(2, 3, 224, 224)
    texts = ['a photo of a cat.', 'a diagram']
    with torch.no_grad():
        torch.testing.assert_close(
            ours.extract_image_feat(images),
            reference.encode_image(images),
            atol=1e-5,
            rtol=1e-5)
        torch.testing.assert_close(
            ours.extract_text_feat(texts),
            reference.encode_text(open_clip.get_tokenizer(name)(texts)),
            atol=1e-5,
            rtol=1e-5)


class OpenCLIPTextTower(torch.nn.Module):
    """open_clip's text tower with a tiny checkpoint's ``text.*`` weights,
    behind the ``encode_text`` that open_clip's zero-shot classifier calls."""

    def __init__(self, open_clip_model: str, clip_state: dict):
        super().__init__()
        self.text = _build_text_tower(EMBED_DIM, {
            **get_model_config(open_clip_model)['text_cfg'],
            **TINY_TEXT
        })
        self.text.load_state_dict(
            {
                k[len('text.'):]: v
                for k, v in clip_state.items() if k.startswith('text.')
            },
            strict=True)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False):
        features = self.text(tokens)
        return F.normalize(features, dim=-1) if normalize else features


def test_zero_shot_averages_the_shipped_prompt_templates(
        tmp_path, monkeypatch):
    """The shipped prompts are CLIP's 80 ImageNet templates and the classifier
    is open_clip's: per class, the renormalised mean of the normalised prompt
    embeddings. The images embed so that the first template alone picks
    other classes than the 80 together; the prediction must be the latter."""
    from open_clip import get_tokenizer
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    cfg = Config.fromfile(str(EVAL_CONFIGS / 'evaclip_g_zeroshot_imagenet.py'))
    class_names = ['tench', 'goldfish', 'great white shark']
    clip_state = tiny_clip_state_dict('g')
    torch.save(clip_state, tmp_path / 'clip.pth')
    model = tiny_clip(
        'g',
        clip_checkpoint=str(tmp_path / 'clip.pth'),
        class_names=class_names,
        prompt_templates=cfg.model.prompt_templates).eval()
    # The 240 prompts in four text-tower batches, the last one short.
    monkeypatch.setattr('visft_mm.benchmarks.eva_clip.TEXT_BATCH_SIZE', 64)

    text_tower = OpenCLIPTextTower(cfg.model.open_clip_model,
                                   clip_state).eval()
    tokenizer = get_tokenizer(cfg.model.open_clip_model)
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    ensemble, first_template = (
        build_zero_shot_classifier(text_tower, tokenizer, class_names,
                                   templates).t().double()
        for templates in (OPENAI_IMAGENET_TEMPLATES,
                          OPENAI_IMAGENET_TEMPLATES[:1]))
    # Two image embeddings with one-hot scores against both classifiers:
    # the first template alone picks classes 0 and 2, all 80 pick 1 and 0.
    first_pick, ensemble_pick = [0, 2], [1, 0]
    one_hot = torch.eye(len(class_names), dtype=torch.double)
    wanted_scores = torch.cat([one_hot[first_pick], one_hot[ensemble_pick]],
                              dim=1)
    image_embeddings = wanted_scores @ torch.linalg.pinv(
        torch.cat([first_template, ensemble]).t())
    images = torch.randn(
        2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trunk_feats = model.visual(images)[0].double()
        model.visual_proj.weight.copy_(
            (torch.linalg.pinv(trunk_feats) @ image_embeddings).t())
        model.visual_proj.bias.zero_()
        image_feats = F.normalize(model.extract_image_feat(images), dim=-1)
        samples = model.predict(images)

    torch.testing.assert_close(
        model.class_embeddings.double(), ensemble, atol=1e-6, rtol=1e-5)
    assert (image_feats.double() @ first_template.t()).argmax(
        dim=1).tolist() == first_pick
    assert [int(s.pred_label) for s in samples] == ensemble_pick


def test_retrieval_recall_matches_a_hand_computation():
    scores = torch.tensor([
        [0.9, 0.1, 0.5, 0.3],  # ranking 0 2 3 1
        [0.2, 0.8, 0.7, 0.1],  # ranking 1 2 0 3
        [0.4, 0.3, 0.2, 0.6]
    ])  # ranking 3 0 1 2
    targets = [[2], [1, 3], [1]]
    # Hits @1: row 1; @2: rows 0 and 1; @3: every row.
    expected = {1: 100 / 3, 2: 200 / 3, 3: 100.0}
    one_hot = torch.zeros(3, 4)
    for row, cols in enumerate(targets):
        one_hot[row, cols] = 1
    got = Numpy2RetrievalRecall.calculate(scores, one_hot, topk=(1, 2, 3))
    assert [float(x)
            for x in got] == pytest.approx([expected[k] for k in (1, 2, 3)])

    metric = Numpy2RetrievalRecall(topk=(1, 2, 3))
    metric.process(None, [
        DataSample(gt_label=cols).set_pred_score(score).to_dict()
        for score, cols in zip(scores, targets)
    ])
    assert metric.evaluate(3) == pytest.approx({
        f'retrieval/Recall@{k}': v
        for k, v in expected.items()
    })


def test_imagenet_subsets_follow_timm_lists():
    names = imagenet_class_names('imagenet-a')
    assert len(names) == 200 and names[0] == 'stingray'  # ImageNet-1k class 6
    assert len(imagenet_class_names('imagenet-r')) == 200
    assert imagenet_variant_folders('imagenet-v2')[:3] == ['0', '1', '2']
    assert imagenet_variant_folders('imagenet-sketch') == list(
        IMAGENET_SYNSETS)


# ------------------------------------------------------------------ errors
MISSING_INPUTS = {
    'evaclip_e_retrieval_flickr30k.py':
    ('EVA02-CLIP-bigE-14-plus checkpoint (original layout) not found '
     'at checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt',
     'huggingface.co/QuanSun/EVA-CLIP',
     'EVA-ViT-E backbone under test not found at visft_e.pth', 'merge_lora.py',
     "Karpathy's dataset_flickr30k.json not found at "
     'data/flickr30k/annotations/dataset_flickr30k.json',
     'caption_datasets.zip',
     'Flickr30k images not found at data/flickr30k/images', 'DenotationGraph'),
    'evaclip_g_retrieval_coco.py':
    ('EVA01-CLIP-g/14 checkpoint (original layout) not found at '
     'checkpoints/EVA01_CLIP_g_14_psz14_s11B.pt',
     'EVA-ViT-G backbone under test not found at visft_e.pth',
     'COCO Karpathy test split (COCO format) not found at '
     'data/coco/annotations/caption_karpathy_test2014.json',
     'coco_retrieval/caption_karpathy_test2014.json',
     'COCO val2014 images not found at data/coco/val2014',
     'images.cocodataset.org/zips/val2014.zip'),
    'evaclip_g_zeroshot_imagenet.py':
    ('EVA01-CLIP-g/14 checkpoint (original layout) not found',
     'ImageNet-1k val images not found at data/imagenet/val',
     'image-net.org/download.php'),
}


@pytest.mark.parametrize('config', list(MISSING_INPUTS))
def test_missing_inputs_are_named_with_where_to_get_them(
        config, tmp_path, monkeypatch):
    """tools/test.py checks required_paths before building anything and
    names every missing input, with how to get it, in one error line."""
    monkeypatch.chdir(
        tmp_path)  # the configs' relative checkpoints/ and data/ are not here
    with pytest.raises(SystemExit) as error:
        run_test_tool(monkeypatch, EVAL_CONFIGS / config, tmp_path,
                      '--backbone', 'visft_e.pth')
    message = str(error.value)
    assert message.startswith('error: missing input files')
    for expected in MISSING_INPUTS[config]:
        assert expected in message


def test_the_model_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(
            CheckpointError,
            match=r'absent\.pt not found; download '
            r'EVA01_CLIP_g_14_psz14_s11B\.pt from '
            r'https://huggingface\.co/QuanSun'):
        tiny_clip('g', clip_checkpoint='absent.pt')
    torch.save(tiny_clip_state_dict('g'), tmp_path / 'clip.pth')
    with pytest.raises(
            CheckpointError,
            match=r'missing\.pth not found; .*eva2visft\.py.*'
            r'merge_lora\.py'):
        tiny_clip(
            'g',
            clip_checkpoint=str(tmp_path / 'clip.pth'),
            backbone_checkpoint='missing.pth')


def test_checkpoints_that_do_not_fit_are_refused(tmp_path):
    clip_state = tiny_clip_state_dict('g')
    torch.save(clip_state, tmp_path / 'clip.pth')
    backbone = {
        k[len('visual.'):]: v
        for k, v in clip_state.items()
        if k.startswith('visual.') and not k.startswith('visual.head.')
    }
    torch.save(backbone, tmp_path / 'backbone.pth')
    with pytest.raises(
            CheckpointError,
            match='not a full EVA-CLIP one.*backbone_checkpoint'):
        tiny_clip('g', clip_checkpoint=str(tmp_path / 'backbone.pth'))
    shallow = {
        k: v
        for k, v in backbone.items() if not k.startswith('blocks.1.')
    }
    torch.save(shallow, tmp_path / 'shallow.pth')
    with pytest.raises(CheckpointError, match=r'\(1 blocks\) does not fit'):
        tiny_clip(
            'g',
            clip_checkpoint=str(tmp_path / 'clip.pth'),
            backbone_checkpoint=str(tmp_path / 'shallow.pth'))
    with pytest.raises(
            CheckpointError,
            match=r'do not fit.*shape mismatches \d+ \(text\.'):
        EVACLIP(
            clip_checkpoint=str(tmp_path / 'clip.pth'),
            vision_arch=tiny_arch('g'),
            embed_dim=EMBED_DIM,
            text_cfg={
                **TINY_TEXT, 'width': 48
            })  # the file has 32


IMAGENET_VARIANT = 'visft_mm.benchmarks.imagenet_variants.ImageNetVariant'


def test_missing_variant_names_the_path_and_where_to_get_it(tmp_path):
    init_default_scope('mmpretrain')
    absent = str(tmp_path / 'absent')
    with pytest.raises(
            FileNotFoundError,
            match=rf'imagenet-r: {re.escape(absent)}/? not found; '
            r'download .*hendrycks/imagenet-r\.tar'):
        DATASETS.build(
            dict(
                type=IMAGENET_VARIANT, variant='imagenet-r', data_root=absent))


def test_wrong_class_folders_are_reported(tmp_path):
    init_default_scope('mmpretrain')
    make_imagenet_variant(tmp_path / 'a', 'imagenet-a', [0])
    (tmp_path / 'a' /
     IMAGENET_SYNSETS[0]).mkdir()  # tench: not an ImageNet-A class
    (tmp_path / 'a' / imagenet_variant_folders('imagenet-a')[5]).rmdir()
    with pytest.raises(
            ValueError,
            match=r'not imagenet-a in its own layout: 1 missing class '
            r'folders .*; 1 unexpected class folders \(n01440764\)'):
        DATASETS.build(
            dict(
                type=IMAGENET_VARIANT,
                variant='imagenet-a',
                data_root=str(tmp_path / 'a')))
