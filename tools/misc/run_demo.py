"""ViSFT end to end on the embedded demo data, on CPU, in and out of domain.

1. Generate the demo dataset (tools/misc/make_demo_coco.py) if it is missing.
2. Pre-train the small backbone CLIP-style on the demo captions: no
   foundation-model weights can be downloaded here, and ViSFT starts from a
   model that already sees (tools/misc/pretrain_demo_backbone.py). Its
   image projection and caption encoder are kept for step 6. Data and
   pre-training are kept in data/ and work_dirs/ and reused by later runs.
   Meanwhile, draw each seed's out-of-domain test sets
   (visft_mm.demo.out_of_domain).
3. Stage 1: train the detection, segmentation and caption heads, each on the
   frozen backbone (tools/train.py with configs/visft/demo/demo_stage1_*.py).
4. Before stage 2: in domain, each stage-1 head as its run validated it at its
   end; out of domain, the pre-trained backbone.
5. Stage 2 with each seed: LoRA on the backbone, heads frozen, one task per
   iteration (tools/train.py with configs/visft/demo/demo_stage2.py); merge
   the LoRA into the backbone (tools/model_converters/merge_lora.py).
6. After stage 2: in domain, each run as it validated its three tasks at its
   end; out of domain, each merged backbone. Print both tables, before and
   after, as mean and standard deviation over the seeds, with how far LoRA
   moved the q and v weights.

Out of domain is zero-shot image-caption retrieval through the frozen
pre-trained towers, on held-out scenes and on scenes with a checkerboard
background that no training of the demo shows.

After steps 4 and 6 the predictions of every task on the first few val images
are drawn (demo/image_demo.py's pictures) into
``work_dirs/visft_demo/pictures/{before,after}_stage2/<task>/`` (after: the
run of seed 0).

Of the runs' logs the demo shows the progress lines (one per logged interval,
with eta), the metrics, warnings and errors; each run's whole log is kept in
its work dir (``<work dir>/<timestamp>/<timestamp>.log``).

The pieces underneath (converter, Pretrained loading, LoRA learning a low-rank
q/v change, merge tool, retrieval) are tested in
tests/test_model_converters.py, tests/test_eva_layouts.py, tests/test_lora.py
and tests/test_demo_out_of_domain.py.
"""
import argparse
import contextlib
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, TextIO, Tuple

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIGS = ROOT / 'configs/visft/demo'
DATA_ROOT = 'data/demo_coco'
WORK_DIR = 'work_dirs/visft_demo'
STAGE1 = ('detection', 'segmentation', 'caption')
# How many val images the pictures before and after stage 2 show.
PICTURE_IMAGES = 3
IN_DOMAIN_COLUMNS = (('bbox mAP', 'detection/coco/bbox_mAP'),
                     ('segm mAP', 'segmentation/coco/segm_mAP'),
                     ('CIDEr', 'caption/CIDEr'), ('BLEU-4', 'caption/Bleu_4'))
OOD_ROOT = 'data/demo_coco_out_of_domain'
VOCAB = f'{DATA_ROOT}/annotations/vocab.json'


def out_of_domain_columns(test_sets: Sequence[str]) -> List[Tuple[str, str]]:
    """(column title, metric key) of each test set and direction."""
    return [(f'{name} {direction.replace("2", "->")}',
             f'{name}/{direction}/Recall@1') for name in test_sets
            for direction in ('i2t', 't2i')]


# The log lines the demo shows: mmengine's progress and metric lines
# (``Iter(train) [ 20/300]  ...``), warnings and errors, and the rows of the
# metric tables; the time stamp and logger name are dropped.
SHOWN_LINE = re.compile(r'^[\d/]+ [\d:]+ - mmengine - '
                        r'(?:INFO - (?=(?:Iter|Epoch)\()|(?=WARNING|ERROR))'
                        r'|^(?=[+|])')


def step(title: str) -> float:
    print(f'\n=== {title}', flush=True)
    return time.time()


class LogDisplay(io.TextIOBase):
    """A text stream that passes on to ``out`` only the lines that
    :data:`SHOWN_LINE` matches (every line with ``log_only=False``), each
    after ``prefix``."""

    def __init__(self, out: TextIO, prefix: str = '', log_only: bool = True):
        self.out = out
        self.prefix = prefix
        self.log_only = log_only
        self.partial = ''

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split('\n')
        for line in lines:
            shown = SHOWN_LINE.match(line) if self.log_only else None
            if shown or not self.log_only:
                print(
                    self.prefix + line[shown.end() if shown else 0:],
                    file=self.out,
                    flush=True)
        return len(text)


def run_together(chains: Sequence[Sequence[Tuple[str, Sequence[str]]]],
                 log_only: bool = True,
                 meanwhile: Optional[Callable[[], Any]] = None) -> Any:
    """Run chains of scripts of the repository side by side, the scripts of a
    chain one after the other. A script is given by its name and arguments;
    its output is shown as :class:`LogDisplay` does, prefixed with its name
    when several run, and its stderr (warnings, tracebacks) in full.
    ``meanwhile`` runs in this process while the chains run; its result is
    returned once every chain has finished.

    Side by side, each script gets one torch thread: the demo's small models
    gain more from a second run on the second core than from a second thread.
    """
    env = dict(os.environ)
    if len(chains) > 1:
        env['OMP_NUM_THREADS'] = '1'
    failed = []

    def run_chain(chain: Sequence[Tuple[str, Sequence[str]]]) -> None:
        for name, args in chain:
            prefix = f'[{name}] ' if len(chains) > 1 else ''
            display = LogDisplay(sys.stdout, prefix, log_only)
            with subprocess.Popen([sys.executable, *args],
                                  cwd=ROOT,
                                  stdout=subprocess.PIPE,
                                  text=True,
                                  env=env) as process:
                for line in process.stdout:
                    display.write(line)
            if process.returncode:
                failed.append((process.returncode, [sys.executable, *args]))
                return

    threads = [
        threading.Thread(target=run_chain, args=(chain, )) for chain in chains
    ]
    for thread in threads:
        thread.start()
    try:
        result = meanwhile() if meanwhile else None
    finally:
        for thread in threads:
            thread.join()
    if failed:
        raise subprocess.CalledProcessError(*failed[0])
    return result


def run(*args: str, log_only: bool = True) -> None:
    """Run one script of the repository as :func:`run_together` does."""
    run_together([[(args[0], args)]], log_only)


def lora_change(checkpoint: str, backbone: str) -> dict:
    """Relative size of the merged LoRA update, ||ΔW|| / ||W||, on the q and v
    slices of every block, as median and max over blocks."""
    from visft_mm.checkpoints.eva_layouts import load_eva_checkpoint
    from visft_mm.checkpoints.lora_files import load_lora
    from visft_mm.models.peft.lora import fused_lora_delta
    weights = load_lora(checkpoint)
    base = load_eva_checkpoint(backbone).state_dict
    ratios = {'q': [], 'v': []}
    for name, layer in weights.layers.items():
        delta = fused_lora_delta(weights.state_dict[f'{name}.lora_A'],
                                 weights.state_dict[f'{name}.lora_B'],
                                 layer['slices'],
                                 layer['alpha'] / layer['rank'])
        weight = base[f'{name}.weight'].float()
        width = weight.shape[0] // 3
        for part, index in (('q', 0), ('v', 2)):
            rows = slice(index * width, (index + 1) * width)
            ratios[part].append(
                float(delta[rows].norm() / weight[rows].norm()))
    return {
        part: (sorted(r)[len(r) // 2], max(r))
        for part, r in ratios.items()
    }


def last_validation(work_dir: Path, task: Optional[str] = None) -> dict:
    """The metrics of a run's last validation, as mmengine's LocalVisBackend
    recorded them (``<work dir>/<timestamp>/vis_data/scalars.json``), keyed
    ``<task>/<metric>``: those of a single-task run (``task`` given) get the
    task's prefix where they lack it."""
    records = max(work_dir.glob('*/vis_data/scalars.json'))
    validations = [{
        key: value
        for key, value in record.items() if '/' in key
    } for record in map(json.loads,
                        records.read_text().splitlines())]
    metrics = next((v for v in reversed(validations) if v), None)
    if metrics is None:
        raise RuntimeError(f'{records} records no validation')
    if task is None:
        return metrics
    return {
        key if key.startswith(f'{task}/') else f'{task}/{key}': value
        for key, value in metrics.items()
    }


def save_pictures(checkpoint: Optional[str],
                  out_dir: Path,
                  config: Path = DEMO_CONFIGS / 'demo_stage2.py',
                  images_dir: Path = ROOT / DATA_ROOT / 'val') -> None:
    """Draw every task's predictions on the first :data:`PICTURE_IMAGES`
    images of ``images_dir`` into ``out_dir/<task>/``, as
    demo/image_demo.py does; without a checkpoint the model is drawn as
    initialised (stage-1 heads, LoRA update zero)."""
    from mmengine.config import Config

    from visft_mm.visualization import draw_image_pictures, init_visft
    cfg = Config.fromfile(str(config))
    with contextlib.redirect_stdout(LogDisplay(sys.stdout)):
        model = init_visft(cfg, checkpoint)
        images = sorted(images_dir.glob('*.png'))[:PICTURE_IMAGES]
        for image in images:
            draw_image_pictures(model, cfg, str(image), str(out_dir))
    overview = out_dir.with_suffix('.jpg')
    save_overview(out_dir, [image.name for image in images], overview)
    print(f'pictures of {len(images)} val images, a folder per task: '
          f'{out_dir}/; all in one: {overview}')


def save_overview(pictures_dir: Path,
                  names: Sequence[str],
                  out: Path,
                  scale: int = 2,
                  gap: int = 8) -> None:
    """One picture of the tasks' pictures of ``names``: a row per image, a
    column per task drawn (detection, segmentation, caption), each enlarged
    ``scale`` times, on white."""
    import mmcv
    import numpy as np
    tasks = [task for task in STAGE1 if (pictures_dir / task).is_dir()]
    rows = []
    for name in names:
        tiles = [
            mmcv.imrescale(
                mmcv.imread(str(pictures_dir / task / name)),
                scale,
                interpolation='nearest') for task in tasks
        ]
        height = tiles[0].shape[0]
        space = np.full((height, gap, 3), 255, np.uint8)
        rows.append(
            np.hstack([part for tile in tiles for part in (tile, space)][:-1]))
    space = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    mmcv.imwrite(
        np.vstack([part for row in rows for part in (row, space)][:-1]),
        str(out))


def mean_and_spread(values: Sequence[float]) -> str:
    """'mean ± sample standard deviation', or the value alone."""
    if len(values) == 1:
        return f'{values[0]:.3f}'
    return f'{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}'


def print_table(title: str, columns: Sequence[Tuple[str, str]],
                rows: Sequence[Tuple[str, Sequence[dict]]]) -> None:
    """One row per label: each column's value as :func:`mean_and_spread`
    over the label's runs (metric dicts)."""
    width = max(len(label) for label, _ in rows) + 2
    print(f'\n{title}')
    print(f'{"":<{width}}' + ''.join(f'{name:>17}' for name, _ in columns))
    for label, runs in rows:
        print(f'{label:<{width}}' +
              ''.join(f'{mean_and_spread([run[key] for run in runs]):>17}'
                      for _, key in columns))


def clear_changes(differences: Sequence[dict],
                  columns: Sequence[Tuple[str, str]]) -> List[str]:
    """The columns whose mean difference lies beyond two standard errors
    (std / sqrt(runs)) from zero; none with fewer than two runs."""
    if len(differences) < 2:
        return []
    clear = []
    for name, key in columns:
        values = [difference[key] for difference in differences]
        error = statistics.stdev(values) / math.sqrt(len(values))
        if abs(statistics.mean(values)) > 2 * error:
            clear.append(f'{name} ({statistics.mean(values):+.3f})')
    return clear


def main():
    from visft_mm.utils.cli import quiet_known_warnings
    quiet_known_warnings()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument(
        '--seeds',
        type=int,
        default=3,
        help='stage-2 runs (seeds 0, 1, ...), each with its own '
        'out-of-domain test sets')
    args = parser.parse_args()
    os.chdir(
        ROOT)  # configs name data/ and work_dirs/ relative to the repository
    work_dir = ROOT / WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)
    seeds = range(args.seeds)
    start = time.time()

    t = step('1/6 demo data')
    if not (ROOT / DATA_ROOT / 'annotations/instances_val.json').exists():
        run('tools/misc/make_demo_coco.py',
            DATA_ROOT,
            '--num-train',
            str(args.num_train),
            '--num-val',
            str(args.num_val),
            '--img-size',
            '112',
            '--seed',
            '0',
            log_only=False)
    else:
        print(f'using {DATA_ROOT}')
    from mmengine.runner import find_latest_checkpoint

    from visft_mm.demo.out_of_domain import (TEST_SETS, evaluate_retrieval,
                                             make_test_sets)
    print(f'({time.time() - t:.0f}s)')

    t = step('2/6 CLIP-style pre-training of the demo backbone '
             '(stands in for EVA-CLIP), while the out-of-domain test sets of '
             'each seed are drawn')
    backbone = f'{WORK_DIR}/backbone_pretrained.pth'
    towers = f'{WORK_DIR}/clip_towers.pth'
    pretraining = []
    if not all((ROOT / path).exists() for path in (backbone, towers)):
        pretraining = [[('pretrain',
                         ('tools/misc/pretrain_demo_backbone.py', DATA_ROOT,
                          backbone, '--towers-out', towers))]]
    else:
        print(f'using {backbone} and {towers} (delete them to pre-train '
              'again)')

    def draw_test_sets() -> dict:
        return {seed: make_test_sets(OOD_ROOT, seed) for seed in seeds}

    # drawing takes one core; pre-training gains less from the second
    test_sets = run_together(
        pretraining, log_only=False, meanwhile=draw_test_sets)
    print(f'out-of-domain test sets: {OOD_ROOT}/seed_*/'
          f'{{{",".join(TEST_SETS)}}}/')
    print(f'({time.time() - t:.0f}s)')

    t = step('3/6 stage 1: detection, segmentation and caption heads, each '
             'on the frozen backbone')
    # detection, the longest, on one core; segmentation then caption on the
    # other
    stage1 = {
        task:
        (task, ('tools/train.py', str(DEMO_CONFIGS / f'demo_stage1_{task}.py'),
                '--work-dir', f'{WORK_DIR}/stage1_{task}'))
        for task in STAGE1
    }
    run_together([[stage1['detection']],
                  [stage1['segmentation'], stage1['caption']]])
    print(f'({time.time() - t:.0f}s)')

    def out_of_domain(backbone_file: str, seed: int) -> dict:
        return evaluate_retrieval(towers, backbone_file, test_sets[seed],
                                  VOCAB)

    t = step('4/6 evaluation before stage 2: in domain as each stage-1 run '
             'validated at its end, out of domain with the pre-trained '
             'backbone')
    before = {}
    for task in STAGE1:
        before.update(last_validation(work_dir / f'stage1_{task}', task))
    (work_dir / 'metrics_before_stage2.json').write_text(
        json.dumps(before, indent=2))
    save_pictures(None, work_dir / 'pictures/before_stage2')
    before_ood = [out_of_domain(backbone, seed) for seed in seeds]
    print(f'({time.time() - t:.0f}s)')

    t = step(f'5/6 stage 2 with seeds {", ".join(map(str, seeds))}: LoRA, '
             'heads frozen, tasks sampled 0.4/0.3/0.3; then each LoRA merged '
             'into the backbone')
    stage2 = {seed: work_dir / f'stage2_seed{seed}' for seed in seeds}
    run_together([[
        (f'seed {seed}',
         ('tools/train.py', str(DEMO_CONFIGS / 'demo_stage2.py'), '--work-dir',
          str(stage2[seed]), '--cfg-options', f'randomness.seed={seed}'))
    ] for seed in seeds])
    # each run's own record of its last checkpoint
    last = {seed: find_latest_checkpoint(str(stage2[seed])) for seed in seeds}
    merged = {
        seed: str(stage2[seed] / 'backbone_merged.pth')
        for seed in seeds
    }
    run_together([[(f'seed {seed}', ('tools/model_converters/merge_lora.py',
                                     backbone, last[seed], merged[seed]))]
                  for seed in seeds],
                 log_only=False)
    print(f'({time.time() - t:.0f}s)')

    t = step('6/6 evaluation after stage 2: in domain as each run validated '
             'at its end, out of domain with each merged backbone')
    after = []
    for seed in seeds:
        after.append(last_validation(stage2[seed]))
        (work_dir / f'metrics_after_stage2_seed{seed}.json').write_text(
            json.dumps(after[-1], indent=2))
    save_pictures(last[0], work_dir / 'pictures/after_stage2')
    after_ood = [out_of_domain(merged[seed], seed) for seed in seeds]
    change = lora_change(last[0], backbone)
    print(f'({time.time() - t:.0f}s)')

    runs = f'{len(seeds)} seed{"s" * (len(seeds) > 1)}'
    print_table(
        'In domain (COCO-style val): one stage-1 model; after stage 2, '
        f'mean ± std over {runs}', IN_DOMAIN_COLUMNS,
        (('stage 1 heads, frozen backbone', [before]),
         ('after stage 2 (LoRA)', after)))
    differences = [{
        key: run_after[key] - run_before[key]
        for key in run_after
    } for run_before, run_after in zip(before_ood, after_ood)]
    print_table(
        'Out of domain, zero-shot retrieval Recall@1 (%) with the frozen '
        f'pre-trained text tower: mean ± std over {runs} (test sets and '
        'stage-2 runs)', out_of_domain_columns(TEST_SETS),
        (('pre-trained backbone', before_ood),
         ('after stage 2, LoRA merged', after_ood),
         ('difference (after - before)', differences)))
    (work_dir / 'metrics_out_of_domain.json').write_text(
        json.dumps(dict(before=before_ood, after=after_ood), indent=2))
    clear = clear_changes(differences, out_of_domain_columns(TEST_SETS))
    print('Out-of-domain changes beyond two standard errors of their mean: '
          f'{", ".join(clear) or "none"}')
    print('\nLoRA update relative to the pre-trained weights, ||ΔW|| / ||W|| '
          '(median, max over blocks; seed 0): ' +
          ', '.join(f'{part} {med:.4f}, {top:.4f}'
                    for part, (med, top) in change.items()))
    print(f'\nDemo finished in {(time.time() - start) / 60:.1f} min; '
          f'outputs in {WORK_DIR}/')


if __name__ == '__main__':
    main()
