"""Cost of a ViSFT config's training, counted on a CPU: FLOPs, peak GPU
memory, wall time.

    python tools/analysis_tools/estimate_cost.py CONFIG [--gpus 8] \\
        [--gpu-tflops 989] [--mfu 0.4]

Builds the config's model at full size without any file and runs one
training iteration of each task at the config's per-GPU batch and largest
training image, under its autocast dtype and gradient checkpointing
(visft_mm.analysis.cost_model says how). Prints per task the FLOPs and the
peak memory split, the wall time of ``max_iters`` projected at ``--mfu`` of
``--gpu-tflops`` (default: an H100 SXM's dense bf16 peak), and ends with
machine-readable lines:

    params_total: <int>
    params_trainable: <int>
    tflops_per_iter[<task>]: <float>
        (model FLOPs, forward + backward, no recomputation)
    peak_mem_gib[<task>]: <float>
"""
import argparse

from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger

from visft_mm.analysis import estimate_cost, projected_seconds, task_ratios
from visft_mm.analysis.cost_model import GIB, RECIPE_GPUS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument(
        '--gpus',
        type=int,
        default=RECIPE_GPUS,
        help='GPUs to project the wall time on (the global batch stays)')
    parser.add_argument(
        '--gpu-tflops',
        type=float,
        default=989.,
        help='dense bf16 peak of one GPU (default: H100 SXM)')
    parser.add_argument(
        '--mfu',
        type=float,
        default=0.4,
        help='model FLOPs utilisation to project with')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_cfg.max_iters=5000')
    return parser.parse_args()


def main():
    args = parse_args()
    MMLogger.get_instance('estimate_cost', log_level='WARNING')
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options or {})
    estimate = estimate_cost(cfg)
    ratios = task_ratios(cfg)
    dtype = (
        str(estimate.autocast_dtype).replace('torch.', '')
        if estimate.autocast_dtype else 'float32 (no autocast)')
    print(f'config: {args.config}')
    print(f'backbone: fake tensors (shapes only), {dtype}, '
          'gradient checkpointing '
          f"{'on' if estimate.checkpointing else 'off'}; "
          "heads: real random tensors of the backbone's output shapes on CPU, "
          "float32 (mmdet's Hungarian matcher needs data)")
    print(
        'FLOPs: torch FlopCounterMode (matrix products, convolutions, '
        'attention); model = each product once; executed = with checkpoint '
        'recomputation and the q@k^T that flash-attention backward recomputes')
    print(
        'memory: weights = parameters + buffers; gradients + AdamW = one '
        'gradient and two moments per trainable parameter; activations = peak '
        'of the live tensors the iteration creates (saved for backward, '
        'temporaries, activation gradients, autocast weight copies), each '
        'storage once; heads in float32 count up to twice their bf16 size')
    print(f'params: {estimate.params_total:,} total, '
          f'{estimate.params_trainable:,} trainable')
    for task, cost in estimate.tasks.items():
        model, executed = cost.model_flops, cost.executed_flops
        print(f'[{task}] {ratios[task]:.0%} of iterations; '
              f'per GPU {cost.task_input.batch_size} '
              f"x {'x'.join(map(str, cost.input_shape[1:]))} (padded)")
        print(f'  TFLOP fwd+bwd: model {cost.total_model_flops / 1e12:.4g} '
              f"(backbone {model['backbone'] / 1e12:.4g}, "
              f"heads {model['heads'] / 1e12:.4g}); executed "
              f'{cost.total_executed_flops / 1e12:.4g} (backbone '
              f"{executed['backbone'] / 1e12:.4g})")
        without = cost.activation_bytes_without_checkpointing
        print(
            f'  peak GiB: {cost.peak_bytes / GIB:.2f} '
            f'= weights {cost.weight_bytes / GIB:.2f} '
            '+ gradients and AdamW '
            f'{cost.grad_and_optimizer_bytes / GIB:.2f} + activations '
            f'{cost.activation_bytes / GIB:.2f} '
            f'(heads {cost.head_activation_bytes / GIB:.2f})' +
            (f'; without checkpointing activations {without / GIB:.2f}, peak '
             f'{(cost.peak_bytes - cost.activation_bytes + without) / GIB:.2f}'
             if without is not None else ''))
    max_iters = cfg.train_cfg.max_iters
    hours = projected_seconds(estimate, ratios, max_iters, args.gpus,
                              args.gpu_tflops, args.mfu) / 3600
    print(
        f'projection: {max_iters:,} iterations of {RECIPE_GPUS} per-GPU '
        f'batches on {args.gpus} GPU(s) at {args.mfu:.0%} MFU of '
        f'{args.gpu_tflops:g} TFLOP/s: {hours:.1f} h ({hours / 24:.2f} days)')
    print(f'params_total: {estimate.params_total}')
    print(f'params_trainable: {estimate.params_trainable}')
    for task, cost in estimate.tasks.items():
        print(f'tflops_per_iter[{task}]: {cost.total_model_flops / 1e12:.6g}')
        print(f'peak_mem_gib[{task}]: {cost.peak_bytes / GIB:.6g}')


if __name__ == '__main__':
    main()
