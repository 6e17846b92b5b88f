"""ViSFT end to end on the embedded demo data, on CPU.

1. Generate the demo dataset (tools/misc/make_demo_coco.py) if it is missing.
2. Pre-train the small backbone CLIP-style on the demo captions: no
   foundation-model weights can be downloaded here, and ViSFT starts from a
   model that already sees (tools/misc/pretrain_demo_backbone.py). Both are
   kept in data/ and work_dirs/ and reused by later runs.
3. Stage 1: train the detection, segmentation and caption heads, each on the
   frozen backbone (tools/train.py with configs/visft/demo/demo_stage1_*.py).
4. Evaluate all three tasks with the stage-1 heads on the frozen backbone.
5. Stage 2: LoRA on the backbone, heads frozen, one task per iteration
   (tools/train.py with configs/visft/demo/demo_stage2.py).
6. Evaluate again and print both rows side by side, with how far LoRA moved
   the q and v weights.

After steps 4 and 6 the predictions of every task on the first few val images
are drawn (demo/image_demo.py's pictures) into
``work_dirs/visft_demo/pictures/{before,after}_stage2/<task>/``.

Of the runs' logs the demo shows the progress lines (one per logged interval,
with eta), the metrics, warnings and errors; each run's whole log is kept in
its work dir (``<work dir>/<timestamp>/<timestamp>.log``).

The pieces underneath (converter, Pretrained loading, LoRA learning a low-rank
q/v change, merge tool) are tested in tests/test_model_converters.py,
tests/test_eva_layouts.py and tests/test_lora.py.
"""
import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIGS = ROOT / 'configs/visft/demo'
DATA_ROOT = 'data/demo_coco'
WORK_DIR = 'work_dirs/visft_demo'
STAGE1 = ('detection', 'segmentation', 'caption')
# How many val images the pictures before and after stage 2 show.
PICTURE_IMAGES = 3
COLUMNS = (('bbox mAP', 'detection/coco/bbox_mAP'),
           ('segm mAP', 'segmentation/coco/segm_mAP'),
           ('CIDEr', 'caption/CIDEr'), ('BLEU-4', 'caption/Bleu_4'))
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
    :data:`SHOWN_LINE` matches."""

    def __init__(self, out: TextIO):
        self.out = out
        self.partial = ''

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split('\n')
        for line in lines:
            shown = SHOWN_LINE.match(line)
            if shown:
                print(line[shown.end():], file=self.out, flush=True)
        return len(text)


def run(*args: str) -> None:
    """Run a script of the repository, showing its log as
    :class:`LogDisplay` does; its stderr (warnings, tracebacks) in full."""
    display = LogDisplay(sys.stdout)
    with subprocess.Popen([sys.executable, *args],
                          cwd=ROOT,
                          stdout=subprocess.PIPE,
                          text=True) as process:
        for line in process.stdout:
            display.write(line)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode,
                                            [sys.executable, *args])


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


def evaluate(checkpoint: Optional[str], out_json: Path) -> dict:
    """Test every task with the stage-2 config. Without a checkpoint the model
    is tested as initialised: stage-1 heads, LoRA update zero."""
    from mmengine.config import Config

    from visft_mm.utils.cli import build_runner
    cfg = Config.fromfile(str(DEMO_CONFIGS / 'demo_stage2.py'))
    cfg.work_dir = f'{WORK_DIR}/eval'
    cfg.load_from = checkpoint
    # the runner's logger writes to the sys.stdout of its creation
    with contextlib.redirect_stdout(LogDisplay(sys.stdout)):
        runner = build_runner(cfg)
        if checkpoint is None:
            runner.model.init_weights()
        metrics = {k: float(v) for k, v in runner.test().items()}
    out_json.write_text(json.dumps(metrics, indent=2))
    return metrics


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
    print(f'pictures of {len(images)} val images, a folder per task: '
          f'{out_dir}/')


def main():
    from visft_mm.utils.cli import quiet_known_warnings
    quiet_known_warnings()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    args = parser.parse_args()
    os.chdir(
        ROOT)  # configs name data/ and work_dirs/ relative to the repository
    work_dir = ROOT / WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()

    t = step('1/6 demo data')
    if not (ROOT / DATA_ROOT / 'annotations/instances_val.json').exists():
        run('tools/misc/make_demo_coco.py', DATA_ROOT, '--num-train',
            str(args.num_train), '--num-val', str(args.num_val), '--img-size',
            '112', '--seed', '0')
    else:
        print(f'using {DATA_ROOT}')
    print(f'({time.time() - t:.0f}s)')

    t = step('2/6 CLIP-style pre-training of the demo backbone '
             '(stands in for EVA-CLIP)')
    backbone = f'{WORK_DIR}/backbone_pretrained.pth'
    if not (ROOT / backbone).exists():
        run('tools/misc/pretrain_demo_backbone.py', DATA_ROOT, backbone)
    else:
        print(f'using {backbone} (delete it to pre-train again)')
    print(f'({time.time() - t:.0f}s)')

    for task in STAGE1:
        t = step(f'3/6 stage 1, {task} head on the frozen backbone')
        run('tools/train.py', str(DEMO_CONFIGS / f'demo_stage1_{task}.py'),
            '--work-dir', f'{WORK_DIR}/stage1_{task}')
        print(f'({time.time() - t:.0f}s)')

    t = step('4/6 evaluation: stage-1 heads on the frozen backbone')
    before = evaluate(None, work_dir / 'metrics_before_stage2.json')
    save_pictures(None, work_dir / 'pictures/before_stage2')
    print(f'({time.time() - t:.0f}s)')

    t = step('5/6 stage 2: LoRA, heads frozen, tasks sampled 0.4/0.3/0.3')
    run('tools/train.py', str(DEMO_CONFIGS / 'demo_stage2.py'), '--work-dir',
        f'{WORK_DIR}/stage2')
    print(f'({time.time() - t:.0f}s)')

    t = step('6/6 evaluation after stage 2')
    last = sorted(
        (work_dir / 'stage2').glob('iter_*.pth'),
        key=lambda p: int(p.stem.split('_')[1]))[-1]
    after = evaluate(str(last), work_dir / 'metrics_after_stage2.json')
    save_pictures(str(last), work_dir / 'pictures/after_stage2')
    print(f'({time.time() - t:.0f}s)')
    change = lora_change(str(last), backbone)

    header = f'{"":<40}' + ''.join(f'{name:>10}' for name, _ in COLUMNS)
    print('\n' + header)
    for label, metrics in (('stage 1 heads on the frozen backbone', before),
                           ('after stage 2 (LoRA)', after)):
        print(f'{label:<40}' +
              ''.join(f'{metrics.get(key, float("nan")):>10.3f}'
                      for _, key in COLUMNS))
    print('\nLoRA update relative to the pre-trained weights, ||ΔW|| / ||W|| '
          '(median, max over blocks): ' +
          ', '.join(f'{part} {med:.4f}, {top:.4f}'
                    for part, (med, top) in change.items()))
    print(f'\nDemo finished in {(time.time() - start) / 60:.1f} min; '
          f'outputs in {WORK_DIR}/')


if __name__ == '__main__':
    main()
