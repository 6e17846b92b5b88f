# Few-shot linear probe: the ImageNet-1k linear probe trained on k images per
# class (default 16) and tested on the full validation set. Write the split
# first (deterministic for a seed):
#   python tools/misc/make_fewshot_split.py data/imagenet --shots 16 --seed 0
# `shots` and `fewshot_seed` name that file: edit them here, or pass the file
#   --cfg-options train_dataloader.dataset.ann_file=meta/train_4shot_seed0.txt
# (`--cfg-options shots=4` alone would not change which file is read).
_base_ = ['./eva_4b_probe_linear-cls_8xb128-10e_in1k.py']
shots = 16
fewshot_seed = 0

train_dataloader = dict(
    batch_size=32,
    dataset=dict(ann_file=f'meta/train_{shots}shot_seed{fewshot_seed}.txt'))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=True,
        begin=5,
        end=50,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=50, val_interval=10)
auto_scale_lr = dict(base_batch_size=256)
required_paths = dict(fewshot=[_base_.fewshot_probe_split])
