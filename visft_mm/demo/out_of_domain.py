"""The demo's out-of-domain test: zero-shot image-caption retrieval of a
backbone under the frozen towers of the demo's CLIP-style pre-training, the
miniature of the EVA-CLIP retrieval benchmarks (configs/visft/eval/).

Each seed draws two test sets that no training of the demo sees:
``held-out``, new scenes like the demo's (muted gradient backgrounds), and
``checker``, new scenes on a checkerboard background, a shift that neither
pre-training nor stage 1 nor stage 2 shows. The backbone under test replaces
the pre-trained trunk; the image projection, caption encoder and logit scale
stay as pre-trained, as ``EVACLIP`` keeps EVA-CLIP's. Written by hand like
the pre-training it reuses; Recall@k is mmpretrain's.
"""
import os
from typing import Dict

from visft_mm.datasets.caption_vocab import WordVocabulary
from .clip_pretrain import load_captioned_split, load_clip, retrieval_recall
from .demo_coco import generate_demo_coco

# test set name -> background of its images (see demo_coco.BACKGROUNDS)
TEST_SETS = {'held-out': 'gradient', 'checker': 'checker'}
# Test sets of seed s are drawn with seed SEED_OFFSET + s, so they never
# repeat the demo's training or val scenes (seed 0).
SEED_OFFSET = 1000
SPLIT = 'val'


def make_test_sets(root: str,
                   seed: int,
                   num_images: int = 200,
                   img_size: int = 112) -> Dict[str, str]:
    """Write the test sets of ``seed`` under ``root/seed_<seed>/<name>/``
    unless present; returns the data root of each, by name."""
    roots = {}
    for name, background in TEST_SETS.items():
        data_root = os.path.join(root, f'seed_{seed}', name)
        if not os.path.exists(
                os.path.join(data_root, 'annotations',
                             f'captions_{SPLIT}.json')):
            generate_demo_coco(
                data_root,
                num_train=0,
                num_val=num_images,
                img_size=img_size,
                seed=SEED_OFFSET + seed,
                background=background)
        roots[name] = data_root
    return roots


def evaluate_retrieval(towers: str, backbone: str, test_roots: Dict[str, str],
                       vocab_file: str) -> Dict[str, float]:
    """Recall@1 in both directions (percent) on every test set, of the
    backbone file ``backbone`` under the towers of ``towers``: keys
    ``<set>/i2t/Recall@1`` and ``<set>/t2i/Recall@1``."""
    vocab = WordVocabulary.load(vocab_file)
    model = load_clip(towers, backbone, vocab)
    # the size the towers were pre-trained at
    img_size = model.backbone.pos_grid * model.backbone.patch_size
    recalls = {}
    for name, data_root in test_roots.items():
        data = load_captioned_split(data_root, SPLIT, img_size, vocab)
        recalls.update({
            f'{name}/{key}': value
            for key, value in retrieval_recall(model, data).items()
        })
    return recalls
