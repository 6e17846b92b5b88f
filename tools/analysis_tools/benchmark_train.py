"""Training speed of a ViSFT config on this machine's GPU (or CPU), per task.

    python tools/analysis_tools/benchmark_train.py CONFIG \\
        [--iters 10] [--warmup 3] [--task caption ...] \\
        [--arch tiny|small|base|eva-g|eva-e|JSON] [--peak-tflops X]

Runs the real model's ``train_step`` through the config's optimizer wrapper
(its autocast, gradient clipping and optimizer step) on synthetic batches of
the config's per-GPU sizes, with random weights and no file. Prints per task
the median seconds per iteration after warm-up, the peak memory
(``torch.cuda.max_memory_allocated``), the achieved TFLOP/s of the executed
FLOPs (with recomputation, counted by tools/analysis_tools/estimate_cost.py's
cost model), MFU (model FLOPs) and HFU (executed FLOPs) against the GPU's
dense bf16 peak, and how many trainable tensors the steps changed. On a CPU
use a small ``--arch``, as a smoke test.
"""
import argparse
import json
import platform
import statistics
import time

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from visft_mm.analysis import (caption_vocabulary, estimate_cost,
                               model_config_without_files, synthetic_batch,
                               task_inputs)
from visft_mm.analysis.cost_model import GIB, autocast_dtype, bf16_peak_tflops
from visft_mm.analysis.synthetic import SMALL_ARCHS, with_backbone_arch
from visft_mm.registry import MODELS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument(
        '--iters', type=int, default=10, help='timed iterations per task')
    parser.add_argument(
        '--warmup', type=int, default=3, help='untimed iterations first')
    parser.add_argument(
        '--task',
        nargs='+',
        help="tasks to run (default: all of the config's)")
    parser.add_argument(
        '--arch',
        help=f'backbone arch instead of the config\'s: '
        f'{", ".join(SMALL_ARCHS)}, eva-g, eva-e or a JSON dict of EVAViT keys'
    )
    parser.add_argument(
        '--peak-tflops',
        type=float,
        help='dense bf16 peak of the device (default: known GPUs by name)')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings')
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def main():
    args = parse_args()
    MMLogger.get_instance('benchmark_train', log_level='WARNING')
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options or {})
    if args.arch:
        arch = json.loads(
            args.arch) if args.arch.lstrip().startswith('{') else args.arch
        cfg.model = with_backbone_arch(cfg.model, arch)
    device = torch.device(args.device)
    init_default_scope(cfg.get('default_scope', 'visft_mm'))
    torch.manual_seed(0)
    with device:  # parameters are created where they run
        model = MODELS.build(model_config_without_files(cfg.model))
        model.init_weights()
    model.to(device).train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    inputs = task_inputs(cfg)
    unknown = set(args.task or ()) - set(inputs)
    if unknown:
        raise SystemExit(
            f'error: {args.config} has no task {sorted(unknown)}; it has '
            f'{sorted(inputs)}')
    tasks = [
        t for t in inputs.values() if not args.task or t.task in args.task
    ]
    cost = estimate_cost(cfg, tuple(t.task for t in tasks))

    if device.type == 'cuda':
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f'CPU {platform.processor() or platform.machine()}'
    peak_tflops = args.peak_tflops or (bf16_peak_tflops(device_name)
                                       if device.type == 'cuda' else None)
    peak = (f'{peak_tflops:g} TFLOP/s'
            if peak_tflops else 'unknown (give --peak-tflops)')
    print(f'device: {device_name}; dense bf16 peak: {peak}')
    print(
        f'precision: {autocast_dtype(optim_wrapper) or "float32"}; '
        f'{args.iters} timed iterations per task after {args.warmup} warm-up')
    trainable = {
        n: p.detach().clone()
        for n, p in model.named_parameters() if p.requires_grad
    }
    for task_input in tasks:
        batch = synthetic_batch(
            task_input,
            vocabulary=caption_vocabulary(model.tasks[task_input.task]))
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            model.train_step(batch, optim_wrapper)
        seconds = []
        for _ in range(args.iters):
            synchronize(device)
            start = time.perf_counter()
            model.train_step(batch, optim_wrapper)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
        step = statistics.median(seconds)
        task_cost = cost.tasks[task_input.task]
        executed = task_cost.total_executed_flops / step / 1e12
        memory = (f'{torch.cuda.max_memory_allocated(device) / GIB:.2f} GiB'
                  if device.type == 'cuda' else 'n/a (CPU)')
        utilisation = (
            'MFU '
            f'{task_cost.total_model_flops / step / 1e12 / peak_tflops:.1%} '
            f'(model FLOPs), HFU {executed / peak_tflops:.1%} (executed FLOPs)'
            if peak_tflops else 'MFU n/a')
        print(f'{task_input.task}: {step:.4f} s/iter, peak memory {memory}, '
              f'{executed:.3g} TFLOP/s (executed FLOPs, with recomputation), '
              f'{utilisation}')
    changed = sum(not torch.equal(before,
                                  model.get_parameter(name).detach())
                  for name, before in trainable.items())
    print(f'trainable tensors changed: {changed} of {len(trainable)}')


if __name__ == '__main__':
    main()
