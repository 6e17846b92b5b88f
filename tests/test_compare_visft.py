"""tools/analysis_tools/compare_visft.py and --backbone: each run gets the
backbone it is labelled with, results are read back from mmengine's json, and
the table shows base, ViSFT and delta."""
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny import NARROW_VIT

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools/analysis_tools'))
import compare_visft  # noqa: E402

# A benchmark whose score is known from the backbone alone: the sum of the
# patch-embedding weights, so a checkpoint filled with c scores c * numel.
TOY_MODULE = textwrap.dedent('''
    import torch
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from visft_mm.registry import DATASETS, METRICS, MODELS

    @MODELS.register_module(force=True)
    class ToyBenchmark(BaseModel):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = MODELS.build(backbone)
            self.backbone.init_weights()

        def forward(self, inputs, data_samples=None, mode='predict'):
            total = float(self.backbone.patch_embed.proj.weight.sum())
            return [dict(weight_sum=total) for _ in inputs]

    @DATASETS.register_module(force=True)
    class ToyImages(torch.utils.data.Dataset):
        metainfo = {}
        def __len__(self):
            return 2
        def __getitem__(self, index):
            return dict(inputs=torch.zeros(3, 28, 28))

    @METRICS.register_module(force=True)
    class WeightSum(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results += [s['weight_sum'] for s in data_samples]
        def compute_metrics(self, results):
            return dict(weight_sum=sum(results) / len(results))
''')


def toy_config(tmp_path: Path, reads_backbone: bool = True) -> str:
    (tmp_path / 'toy_benchmark.py').write_text(TOY_MODULE)
    checkpoint = ("'{{$BACKBONE_CHECKPOINT:default.pth}}'"
                  if reads_backbone else "'fixed.pth'")
    path = tmp_path / ('toy_benchmark_cfg.py'
                       if reads_backbone else 'fixed_cfg.py')
    path.write_text(
        textwrap.dedent(f'''
        default_scope = 'visft_mm'
        custom_imports = dict(
            imports=['toy_benchmark'], allow_failed_imports=False)
        backbone_checkpoint = {checkpoint}
        model = dict(type='ToyBenchmark', backbone=dict(
            type='EVAViT', arch={NARROW_VIT!r}, pretrain_img_size=28,
            init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
        test_dataloader = dict(
            batch_size=2, num_workers=0, dataset=dict(type='ToyImages'),
            sampler=dict(type='DefaultSampler', shuffle=False))
        test_evaluator = dict(type='WeightSum')
        test_cfg = dict()
    '''))
    return str(path)


def filled_backbone(path: Path, value: float) -> str:
    from visft_mm.models import EVAViT
    backbone = EVAViT(arch=NARROW_VIT, pretrain_img_size=28)
    state = {
        k: torch.full_like(v, value)
        for k, v in backbone.state_dict().items()
    }
    torch.save(state, path)
    return str(path)


def test_compare_runs_each_benchmark_with_its_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = toy_config(tmp_path)
    base = filled_backbone(tmp_path / 'base.pth', 1.0)
    visft = filled_backbone(tmp_path / 'visft.pth', 2.0)
    work_dir = tmp_path / 'compare'
    table = compare_visft.main([
        config, '--base', base, '--visft', visft, '--work-dir',
        str(work_dir), '--out',
        str(tmp_path / 't.md')
    ])

    numel = 3 * 14 * 14 * NARROW_VIT['embed_dims']
    row = [line for line in table.splitlines() if 'weight_sum' in line]
    assert row == [
        f'| toy_benchmark_cfg | weight_sum | {numel:.4g} | {2 * numel:.4g} '
        f'| +{numel:.4g} |'
    ]
    assert (tmp_path / 't.md').read_text().strip() == table

    # A second call reads the results instead of running again.
    calls = []
    monkeypatch.setattr(compare_visft.subprocess, 'run',
                        lambda *a, **k: calls.append(a))
    assert compare_visft.main([
        config, '--base', base, '--visft', visft, '--work-dir',
        str(work_dir)
    ]) == table
    assert calls == []


def test_compare_reads_existing_results_and_filters_metrics(tmp_path):
    config = toy_config(tmp_path)
    visft = filled_backbone(tmp_path / 'visft.pth', 2.0)
    results = {
        'base': {
            'accuracy/top1': 70.0,
            'accuracy/top5': 90.0,
            'time': 1.0
        },
        'visft': {
            'accuracy/top1': 71.5,
            'accuracy/top5': 90.0,
            'time': 2.0
        }
    }
    for label, metrics in results.items():
        run = tmp_path / 'cmp/toy_benchmark_cfg' / label / '20260101_000000'
        run.mkdir(parents=True)
        (run / '20260101_000000.json').write_text(json.dumps(metrics) + '\n')
    table = compare_visft.main([
        config, '--visft', visft, '--work-dir',
        str(tmp_path / 'cmp'), '--metrics', 'top1'
    ])
    assert table.splitlines()[2:] == [
        '| toy_benchmark_cfg | accuracy/top1 | 70 | 71.5 | +1.5 |'
    ]


def test_backbone_flag_refuses_configs_that_ignore_it(tmp_path, monkeypatch):
    import argparse
    monkeypatch.syspath_prepend(str(tmp_path))

    from visft_mm.utils.cli import load_tool_config
    args = argparse.Namespace(
        config=toy_config(tmp_path, reads_backbone=False),
        backbone='visft.pth',
        launcher='none',
        local_rank=0,
        cfg_options=None,
        work_dir=str(tmp_path))
    with pytest.raises(SystemExit, match='does not take its backbone from'):
        load_tool_config(args)
    args.config = toy_config(tmp_path)
    cfg = load_tool_config(args)
    assert cfg.model.backbone.init_cfg.checkpoint == 'visft.pth'
    assert 'BACKBONE_CHECKPOINT' not in os.environ


def test_compare_asks_for_probes_to_be_trained_first(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    config = Path(toy_config(tmp_path))
    config.write_text(
        config.read_text() +
        "train_dataloader = dict(dataset=dict(type='ToyImages'))\n")
    visft = filled_backbone(tmp_path / 'visft.pth', 2.0)
    with pytest.raises(
            SystemExit,
            match=('trains a probe.*tools/train.py .*--work-dir '
                   '.*cmp/toy_benchmark_cfg/base')):
        compare_visft.main([
            str(config), '--visft', visft, '--work-dir',
            str(tmp_path / 'cmp')
        ])
