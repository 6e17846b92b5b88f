"""visft_mm: ViSFT (arXiv 2401.10222) as an OpenMMLab plugin.

Modules register into the ``visft_mm`` scope (see :mod:`visft_mm.registry`).
Importing visft_mm also lets torch's weights-only loader open mmengine run
checkpoints and mmengine's ``Config`` resolve ``visft_mm::`` base configs
(see :mod:`visft_mm.openmmlab`), so both work in any OpenMMLab tool once a
config names the ``visft_mm`` scope or imports visft_mm.
"""
from .openmmlab import register_with_openmmlab

__version__ = '0.1.0'

register_with_openmmlab()
