"""Benchmark EVAViT against timm's Eva, and LoRA against plain and full
fine-tuning.

All runs share one process, one input batch and one thread count, and
alternate between the compared models so drift hits both; each figure is a
median over ``--iters`` timed steps after ``--warmup`` untimed ones. The last
three lines printed are the ratios (lower is better for ours / LoRA):

    evavit_vs_timm_fwd_bwd_ratio       forward+backward, same weights
    lora_vs_plain_forward_ratio        unmerged LoRA (q, v) vs no LoRA
    lora_vs_full_finetune_step_ratio   LoRA-only AdamW step vs full AdamW step

Example (CPU): ``python tools/analysis_tools/benchmark_backbone.py
--arch small``
Example (GPU): ``python tools/analysis_tools/benchmark_backbone.py
--arch eva-g --device cuda --dtype bfloat16 --batch-size 8``
"""
import argparse
import functools
import statistics
import time
from contextlib import nullcontext
from typing import Callable, Dict, List

import torch
from mmengine.logging import MMLogger

from visft_mm.analysis.synthetic import SMALL_ARCHS
from visft_mm.models import EVAViT, FrozenBackbone, LoRAModel


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--arch',
        default='small',
        help=f"{sorted(SMALL_ARCHS)} or an EVAViT arch name ('eva-g', 'eva-e')"
    )
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--rank', type=int, default=64)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--dtype',
        default='float32',
        choices=['float32', 'bfloat16'],
        help='bfloat16 runs under torch.autocast')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='CPU threads (default: torch)')
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_alternating(steps: Dict[str, Callable[[], None]], iters: int,
                     warmup: int, device: torch.device) -> Dict[str, float]:
    """Median seconds per call of each step, interleaving the steps."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    samples: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return {
        name: statistics.median(values)
        for name, values in samples.items()
    }


def build_pair(arch, device):
    """Our EVAViT (timm-compatible, token output) and timm's Eva with its
    weights."""
    import timm.models.eva as timm_eva
    ours = EVAViT(arch=arch, with_cls_token=True, out_type='raw')
    ours.init_weights()
    settings = ours.arch_settings
    timm_model = timm_eva.Eva(
        img_size=224,
        patch_size=14,
        num_classes=0,
        global_pool='',
        use_fc_norm=False,
        embed_dim=settings['embed_dims'],
        depth=settings['num_layers'],
        num_heads=settings['num_heads'],
        mlp_ratio=settings['feedforward_channels'] / settings['embed_dims'],
        qkv_bias=True,
        use_post_norm=bool(settings.get('post_norm', False)),
        dynamic_img_size=True)
    timm_model.load_state_dict(ours.state_dict(), strict=False)
    return ours.to(device), timm_model.to(device)


def main():
    args = parse_args()
    # Warnings only: mmengine logs one line per parameter on init_weights().
    MMLogger.get_instance('benchmark_backbone', log_level='WARNING')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    arch = SMALL_ARCHS.get(args.arch, args.arch)
    autocast = (
        functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)
        if args.dtype == 'bfloat16' else nullcontext)
    torch.manual_seed(0)
    x = torch.randn(
        args.batch_size, 3, args.img_size, args.img_size, device=device)

    ours, timm_model = build_pair(arch, device)
    ours.train()
    timm_model.train()

    def fwd_bwd(model, forward):

        def step():
            model.zero_grad(set_to_none=True)
            with autocast():
                out = forward(x)
            out.float().square().mean().backward()

        return step

    fwd_bwd_times = time_alternating(
        dict(
            evavit=fwd_bwd(ours, lambda t: ours(t)[0]),
            timm=fwd_bwd(timm_model, timm_model.forward_features)), args.iters,
        args.warmup, device)
    del timm_model

    # LoRA vs no LoRA, forward only (inference with unmerged LoRA).
    plain = EVAViT(arch=arch).to(device).eval()
    # the stage-2 backbone: LoRA inside a frozen ViT (random weights here)
    lora = LoRAModel(
        FrozenBackbone(EVAViT(arch=arch), random_weights=True),
        rank=args.rank).to(device).eval()
    lora.network.load_state_dict(plain.state_dict(), strict=False)

    def forward(model):

        def step():
            with torch.no_grad(), autocast():
                model(x)

        return step

    forward_times = time_alternating(
        dict(plain=forward(plain), lora=forward(lora)), args.iters,
        args.warmup, device)

    # A LoRA training step vs a full fine-tuning step (AdamW,
    # forward+backward+update).
    full_opt = torch.optim.AdamW(plain.parameters(), lr=1e-5)
    lora_opt = torch.optim.AdamW(
        [p for p in lora.parameters() if p.requires_grad], lr=1e-5)
    plain.train()
    lora.train()

    def train_step(model, optimizer):

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out = model(x)[0]
            out.float().square().mean().backward()
            optimizer.step()

        return step

    step_times = time_alternating(
        dict(
            full=train_step(plain, full_opt), lora=train_step(lora, lora_opt)),
        args.iters, args.warmup, device)

    print(f'device={device} dtype={args.dtype} arch={args.arch} '
          f'batch={args.batch_size} img={args.img_size} rank={args.rank} '
          f'threads={torch.get_num_threads()}')
    for group in (fwd_bwd_times, forward_times, step_times):
        for name, seconds in group.items():
            print(f'  {name:>8}: {seconds * 1e3:9.2f} ms')
    print('evavit_vs_timm_fwd_bwd_ratio: '
          f"{fwd_bwd_times['evavit'] / fwd_bwd_times['timm']:.3f}")
    print('lora_vs_plain_forward_ratio: '
          f"{forward_times['lora'] / forward_times['plain']:.3f}")
    print('lora_vs_full_finetune_step_ratio: '
          f"{step_times['lora'] / step_times['full']:.3f}")


if __name__ == '__main__':
    main()
