"""Registries of the ``visft_mm`` scope.

visft_mm keeps its own scope, as mmyolo does, so its modules never collide
with names in mmdet/mmseg/mmpretrain and any OpenMMLab config can name them
with the ``visft_mm.`` prefix (``backbone=dict(type='visft_mm.EVAViT')``)
without ``custom_imports``: mmengine imports ``visft_mm.registry`` for the
prefix, and each registry's ``locations`` imports the modules.

Each node is a child of mmdet's node rather than of mmengine's root, because
ViSFT's detection and segmentation heads, assigners and losses come from
mmdet: inside the ``visft_mm`` scope they resolve without a prefix
(``type='DETRHead'``). mmseg and mmpretrain modules take their prefix
(``type='mmpretrain.LoRAModel'``). mmengine follows a prefix from another
scope only to the root's direct children, so each node is listed there too.
"""
from mmdet.registry import DATA_SAMPLERS as MMDET_DATA_SAMPLERS
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import EVALUATOR as MMDET_EVALUATOR
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import LOG_PROCESSORS as MMDET_LOG_PROCESSORS
from mmdet.registry import LOOPS as MMDET_LOOPS
from mmdet.registry import METRICS as MMDET_METRICS
from mmdet.registry import MODEL_WRAPPERS as MMDET_MODEL_WRAPPERS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMDET_OPTIM_WRAPPER_CONSTRUCTORS
from mmdet.registry import OPTIM_WRAPPERS as MMDET_OPTIM_WRAPPERS
from mmdet.registry import OPTIMIZERS as MMDET_OPTIMIZERS
from mmdet.registry import PARAM_SCHEDULERS as MMDET_PARAM_SCHEDULERS
from mmdet.registry import RUNNER_CONSTRUCTORS as MMDET_RUNNER_CONSTRUCTORS
from mmdet.registry import RUNNERS as MMDET_RUNNERS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmdet.registry import VISBACKENDS as MMDET_VISBACKENDS
from mmdet.registry import VISUALIZERS as MMDET_VISUALIZERS
from mmdet.registry import WEIGHT_INITIALIZERS as MMDET_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

SCOPE = 'visft_mm'


def _child(name, parent, locations):
    """A visft_mm node under mmdet's ``parent``, also listed among the root's
    children: mmengine resolves a ``visft_mm.`` prefix from another scope
    (``default_scope='mmpretrain'``) through the root, which only looks at
    its direct children."""
    registry = Registry(name, parent=parent, scope=SCOPE, locations=locations)
    registry._get_root_registry()._children.setdefault(SCOPE, registry)
    return registry


MODELS = _child('model', MMDET_MODELS, ['visft_mm.models'])
TASK_UTILS = _child('task util', MMDET_TASK_UTILS, ['visft_mm.models'])
DATASETS = _child('dataset', MMDET_DATASETS, ['visft_mm.datasets'])
DATA_SAMPLERS = _child('data sampler', MMDET_DATA_SAMPLERS,
                       ['visft_mm.datasets'])
TRANSFORMS = _child('transform', MMDET_TRANSFORMS, ['visft_mm.datasets'])
METRICS = _child('metric', MMDET_METRICS, ['visft_mm.evaluation'])
EVALUATOR = _child('evaluator', MMDET_EVALUATOR, ['visft_mm.evaluation'])
LOOPS = _child('loop', MMDET_LOOPS, ['visft_mm.engine'])
HOOKS = _child('hook', MMDET_HOOKS, ['visft_mm.engine'])
RUNNERS = _child('runner', MMDET_RUNNERS, ['visft_mm.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMDET_OPTIM_WRAPPERS,
                        ['visft_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMDET_OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['visft_mm.engine'])
PARAM_SCHEDULERS = _child('parameter scheduler', MMDET_PARAM_SCHEDULERS,
                          ['visft_mm.engine'])
LOG_PROCESSORS = _child('log_processor', MMDET_LOG_PROCESSORS,
                        ['visft_mm.engine'])
VISUALIZERS = _child('visualizer', MMDET_VISUALIZERS,
                     ['visft_mm.visualization'])
# Nodes with no visft_mm modules of their own: they exist so that builds in
# the visft_mm scope find mmdet's registries instead of warning and falling
# back to mmengine's root.
OPTIMIZERS = _child('optimizer', MMDET_OPTIMIZERS, [])
WEIGHT_INITIALIZERS = _child('weight initializer', MMDET_WEIGHT_INITIALIZERS,
                             [])
MODEL_WRAPPERS = _child('model_wrapper', MMDET_MODEL_WRAPPERS, [])
RUNNER_CONSTRUCTORS = _child('runner constructor', MMDET_RUNNER_CONSTRUCTORS,
                             [])
VISBACKENDS = _child('vis_backend', MMDET_VISBACKENDS, [])
