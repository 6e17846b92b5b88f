"""The CPU demo's own pieces: the shapes dataset in COCO layout
(:mod:`~visft_mm.demo.demo_coco`), the CLIP-style pre-training of the demo
backbone (:mod:`~visft_mm.demo.clip_pretrain`) and its out-of-domain
retrieval test (:mod:`~visft_mm.demo.out_of_domain`), used by
tools/misc/{make_demo_coco,pretrain_demo_backbone,run_demo}.py. Nothing here
is registered, so no config imports it."""
