"""Checkpoint formats of visft_mm, one module per family.

* :mod:`.io`: reading and atomic writing, the DDP ``module.`` prefix, the
  key-by-key misfit report every strict load goes through, and the
  ``CheckpointError`` they raise; run (mmengine) checkpoints are read here.
* :mod:`.eva_layouts`: EVA vision-tower checkpoints in, converted to EVAViT
  (and EVACLIP) keys, and loaded into a model or read for the tools.
* :mod:`.exports`: EVAViT out, to the EVA-CLIP, LAVIS and mmpretrain layouts.
* :mod:`.lora_files`: LoRA files (ours, the official layout, stage-2 run
  checkpoints) and merging them into a backbone.
* :mod:`.official_heads`: the released stage-1 heads' keys mapped to the
  task models.

Nothing here imports :mod:`visft_mm.models`: models import these modules.
"""
