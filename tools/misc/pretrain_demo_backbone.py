"""Pretrain the demo's small EVA-ViT CLIP-style on the demo captions (CPU,
minutes).

    python tools/misc/pretrain_demo_backbone.py data/demo_coco \\
        work_dirs/demo_eva.pth [--towers-out work_dirs/demo_clip_towers.pth]

Stands in for the EVA-CLIP checkpoint the demo cannot download: the output is
a plain EVAViT state dict for ``init_cfg=dict(type='Pretrained', ...)``, built
with ``pretrain_img_size=--img-size`` and no cls token. Images are normalised
with the CLIP mean/std, so the demo's data preprocessors must use them too.
``--towers-out`` also keeps the rest of the CLIP model (image projection,
caption encoder), which the demo's out-of-domain retrieval puts over the
backbone under test. Same arguments, machine and thread count: same weights.
"""
import argparse
import sys

from mmengine.logging import MMLogger

from visft_mm.checkpoints.io import save_atomic
from visft_mm.demo.clip_pretrain import pretrain_clip, save_clip_towers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'data_root', help='demo COCO root (train/, val/, annotations/)')
    parser.add_argument('out_ckpt', help='EVAViT state dict to write')
    parser.add_argument(
        '--towers-out',
        help='also write the image projection and caption encoder here')
    parser.add_argument(
        '--arch-dims', type=int, default=192, help='embed_dims of the ViT')
    parser.add_argument(
        '--layers', type=int, default=4, help='number of ViT blocks')
    parser.add_argument(
        '--heads', type=int, default=4, help='attention heads per block')
    parser.add_argument(
        '--ffn', type=int, default=384, help='MLP hidden width')
    parser.add_argument(
        '--img-size',
        type=int,
        default=112,
        help='training image side, also the pretrain_img_size of the output')
    parser.add_argument(
        '--iters', type=int, default=600, help='training iterations')
    parser.add_argument(
        '--batch-size', type=int, default=32, help='images per batch')
    parser.add_argument(
        '--lr', type=float, default=1e-3, help='peak AdamW learning rate')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Warnings only: mmengine logs one line per parameter on init_weights().
    MMLogger.get_instance('pretrain_demo_backbone', log_level='WARNING')
    arch = dict(
        embed_dims=args.arch_dims,
        num_layers=args.layers,
        num_heads=args.heads,
        feedforward_channels=args.ffn)
    try:
        model, report = pretrain_clip(
            args.data_root,
            arch,
            img_size=args.img_size,
            iters=args.iters,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            log=lambda message: print(message, flush=True))
        save_atomic(model.backbone.state_dict(), args.out_ckpt)
        if args.towers_out:
            save_clip_towers(model, arch, args.img_size, args.towers_out)
    except (OSError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(1)
    print(f'training loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}; '
          f'first batch {report.fixed_batch_loss_before:.3f} -> '
          f'{report.fixed_batch_loss_after:.3f}')
    print(f'val image->caption Recall@1: {report.retrieval_before:.1f} '
          f'before, {report.retrieval_after:.1f} after '
          f'(chance {report.retrieval_chance:.1f})')
    saved = ' and '.join(filter(None, (args.out_ckpt, args.towers_out)))
    print(f'saved {saved} in {report.seconds:.0f}s')


if __name__ == '__main__':
    main()
