"""Image normalisation statistics shared by the models and the tests.

A leaf module: it imports nothing, so any module of visft_mm may read it
without an import cycle. (Importing the package itself loads torch and
mmengine's config, see :mod:`visft_mm.openmmlab`.)
"""

# EVA-CLIP's (OpenAI CLIP's) per-channel RGB mean and std, for pixels scaled
# to 0..1; OpenMMLab data preprocessors, which see 0..255 pixels, take them
# times 255.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
