"""CaptionMetric: BLEU/METEOR/ROUGE-L/CIDEr through pycocoevalcap, no SPICE."""
import json
import shutil

import pytest
from mmpretrain.structures import DataSample

from visft_mm.evaluation import CaptionMetric, caption_metric
from visft_mm.registry import METRICS

needs_java = pytest.mark.skipif(
    shutil.which('java') is None,
    reason='pycocoevalcap runs its tokenizer and METEOR on java')

EXPECTED_KEYS = {
    'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr'
}
REFERENCES = {
    1: [
        'A man is riding a red bike down the street.',
        'A cyclist rides along a city road.'
    ],
    2: [
        'Two dogs are playing with a ball in the park.',
        'Dogs chase a ball on green grass.'
    ],
    3: [
        'A plate of pasta with tomato sauce on a table.',
        'Spaghetti served on a white plate.'
    ],
    4: [
        'A small boat floats on a calm lake at sunset.',
        'A boat on the water in the evening.'
    ],
}
WRONG = 'purple elephants juggling umbrellas quietly'


def score(predictions: dict) -> dict:
    metric = CaptionMetric()
    metric.process(None, [
        DataSample(
            metainfo=dict(img_id=img_id),
            pred_caption=prediction,
            gt_caption=REFERENCES[img_id])
        for img_id, prediction in predictions.items()
    ])
    return metric.compute_metrics(metric.results)


@pytest.fixture(scope='module')
def perfect() -> dict:
    """Scores of predictions that each equal the image's first reference."""
    return score({img_id: refs[0] for img_id, refs in REFERENCES.items()})


@needs_java
def test_prediction_equal_to_a_reference_scores_bleu_one(perfect):
    wrong = score({img_id: WRONG for img_id in REFERENCES})
    assert set(perfect) == EXPECTED_KEYS and set(wrong) == EXPECTED_KEYS
    for n in range(1, 5):
        assert perfect[f'Bleu_{n}'] == pytest.approx(1.0, abs=1e-6)
    assert perfect['CIDEr'] > 0
    assert perfect['CIDEr'] > wrong['CIDEr']
    assert perfect['METEOR'] > wrong['METEOR'] and perfect['ROUGE_L'] > wrong[
        'ROUGE_L']
    assert wrong['Bleu_4'] == pytest.approx(0.0, abs=1e-6)


@needs_java
def test_evaluate_dedupes_images_and_prefixes_names():
    metric = METRICS.build(dict(type='CaptionMetric'))
    batch = [
        DataSample(
            metainfo=dict(image_id=img_id),
            pred_caption=refs[0],
            gt_caption=refs) for img_id, refs in REFERENCES.items()
    ]
    # a second prediction for image 1, as a dict the way mmengine's Evaluator passes outputs
    batch.append(
        dict(image_id=1, pred_caption=WRONG, gt_caption=REFERENCES[1]))
    metric.process(None, batch)
    results = metric.evaluate(size=len(batch))
    assert set(results) == {f'caption/{name}' for name in EXPECTED_KEYS}
    assert results['caption/Bleu_4'] == pytest.approx(1.0, abs=1e-6)


@needs_java
def test_references_from_a_coco_captions_file(tmp_path, perfect):
    ann_file = tmp_path / 'captions_val.json'
    pairs = [(img_id, caption) for img_id, refs in REFERENCES.items()
             for caption in refs]
    annotations = [
        dict(id=i, image_id=img_id, caption=caption)
        for i, (img_id, caption) in enumerate(pairs)
    ]
    ann_file.write_text(
        json.dumps(
            dict(
                images=[dict(id=i) for i in REFERENCES],
                annotations=annotations)))
    metric = CaptionMetric(ann_file=str(ann_file))
    metric.process(None, [
        dict(img_id=img_id, pred_caption=refs[0])
        for img_id, refs in REFERENCES.items()
    ])
    assert metric.compute_metrics(metric.results) == pytest.approx(perfect)


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(caption_metric.shutil, 'which', lambda name: None)
    with pytest.raises(RuntimeError, match='Java'):
        CaptionMetric()
