"""visft_mm: ViSFT (arXiv 2401.10222) as an OpenMMLab plugin.

Modules register into the ``visft_mm`` scope (see :mod:`visft_mm.registry`).
"""
__version__ = '0.1.0'
