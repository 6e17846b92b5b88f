"""End-to-end check of the ViSFT foundation on CPU, in well under a minute.

1. A small EVA-ViT is written as an EVA-CLIP checkpoint (``visual.*``,
   ``text.*``, ``logit_scale``) and converted with ``eva2visft.py``.
2. The converted file loads through ``init_cfg=dict(type='Pretrained')``.
3. LoRA on q and v learns to imitate a teacher whose q/v weights differ by a
   low-rank change (the situation stage 2 is built for), printing the loss.
4. The LoRA file is merged with ``merge_lora.py``; the merged plain backbone
   must reproduce the LoRA model's features.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
from mmengine.logging import MMLogger

from visft_mm.checkpoints.lora_files import save_lora
from visft_mm.models import EVAViT, LoRAModel

ROOT = Path(__file__).resolve().parents[2]
ARCH = dict(embed_dims=96, num_layers=4, num_heads=4, feedforward_channels=256)
IMG = 56


def run_tool(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def make_teacher(student_state: dict, rank: int,
                 generator: torch.Generator) -> EVAViT:
    """The student's weights plus a rank-``rank`` change of every q and v projection."""
    teacher = EVAViT(arch=ARCH, pretrain_img_size=IMG)
    teacher.load_state_dict(student_state)
    C = ARCH['embed_dims']
    with torch.no_grad():
        for block in teacher.blocks:
            for rows in (slice(0, C), slice(2 * C, 3 * C)):
                u = torch.randn(C, rank, generator=generator) * 0.15
                v = torch.randn(rank, C, generator=generator) * 0.15
                block.attn.qkv.weight[rows] += u @ v
    return teacher.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo_foundation')
    parser.add_argument('--steps', type=int, default=150)
    args = parser.parse_args()
    work_dir = ROOT / args.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    # Warnings only: mmengine logs one line per parameter on init_weights().
    MMLogger.get_instance('visft_demo', log_level='WARNING')
    start = time.time()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    print('[1/4] EVA-CLIP-layout checkpoint -> eva2visft.py')
    source = EVAViT(arch=ARCH, pretrain_img_size=IMG).eval()
    source.init_weights()
    clip_ckpt = {f'visual.{k}': v for k, v in source.state_dict().items()}
    clip_ckpt.update({
        'visual.cls_token': torch.randn(1, 1, ARCH['embed_dims']),
        'visual.head.weight': torch.randn(32, ARCH['embed_dims']),
        'text.token_embedding.weight': torch.randn(100, 32),
        'logit_scale': torch.tensor(4.6)
    })
    torch.save(clip_ckpt, work_dir / 'eva_clip_small.pt')
    converted = work_dir / 'eva_small_visft.pth'
    run_tool('tools/model_converters/eva2visft.py',
             str(work_dir / 'eva_clip_small.pt'), str(converted))

    print('[2/4] EVAViT(init_cfg=Pretrained) loads the converted file')
    student = LoRAModel(
        dict(
            type='EVAViT',
            arch=ARCH,
            pretrain_img_size=IMG,
            init_cfg=dict(type='Pretrained', checkpoint=str(converted))),
        rank=8,
        alpha=8)
    student.init_weights()
    images = torch.randn(16, 3, IMG, IMG, generator=gen)
    with torch.no_grad():
        diff = (student(images)[0] - source(images)[0]).abs().max().item()
    print(
        f'      max |features - source features| = {diff:.2e} (LoRA B starts at zero)'
    )
    if diff > 1e-5:
        raise SystemExit('converted backbone does not reproduce the source')

    print(
        f'[3/4] LoRA (q, v; rank 8) imitates a teacher with rank-4 q/v changes, '
        f'{args.steps} steps')
    base_state = {
        k: v
        for k, v in student.module.state_dict().items() if 'lora_' not in k
    }
    teacher = make_teacher(base_state, rank=4, generator=gen)
    optimizer = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=3e-3)
    student.train()
    losses = []
    for step in range(args.steps):
        batch = torch.randn(8, 3, IMG, IMG, generator=gen)
        with torch.no_grad():
            target = teacher(batch)[0]
        loss = torch.nn.functional.mse_loss(student(batch)[0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 30 == 0 or step == args.steps - 1:
            print(f'      step {step:4d}  feature MSE {loss.item():.5f}')
    if not losses[-1] < 0.5 * losses[0]:
        raise SystemExit('LoRA did not learn')

    print('[4/4] merge_lora.py -> plain EVAViT reproduces the LoRA model')
    lora_file = work_dir / 'lora.pth'
    save_lora(student, lora_file)
    merged_file = work_dir / 'eva_small_merged.pth'
    run_tool('tools/model_converters/merge_lora.py', str(converted),
             str(lora_file), str(merged_file))
    merged = EVAViT(
        arch=ARCH,
        pretrain_img_size=IMG,
        init_cfg=dict(type='Pretrained', checkpoint=str(merged_file)))
    merged.init_weights()
    student.eval()
    with torch.no_grad():
        diff = (merged.eval()(images)[0] -
                student(images)[0]).abs().max().item()
    print(f'      max |merged - LoRA| = {diff:.2e}')
    if diff > 1e-4:
        raise SystemExit('merged backbone does not reproduce the LoRA model')
    print(
        f'Foundation check passed in {time.time() - start:.1f}s: feature MSE '
        f'{losses[0]:.4f} -> {losses[-1]:.4f}; outputs in {work_dir}')


if __name__ == '__main__':
    main()
