"""A training run imports training code only: the packages the visft_mm
registries import (their ``locations``) and tools/train.py's helpers leave the
benchmarks (visft_mm.benchmarks, with open_clip and timm) and the demo
(visft_mm.demo) unimported; the benchmark configs import what they use."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVAL_CONFIGS = ROOT / 'configs/visft/eval'

# Run in a fresh interpreter: import what the registries import when a
# training config builds, note which modules of interest that pulled in, then
# load a benchmark config and resolve the visft_mm.benchmarks types it names
# through the registries. mmdet.models itself imports mmpretrain.models, and
# with it mmpretrain.models.multimodal, so that package is judged by who
# imports from it: no visft_mm module may.
FRESH_INTERPRETER = r'''
import builtins, importlib, json, sys
from mmengine.config import Config
from mmengine.registry import (METRICS, MODELS, Registry,
                               init_default_scope)
importers = set()
plain_import = builtins.__import__
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name.startswith(('mmpretrain.models.multimodal', 'open_clip')):
        importers.add((globals or {}).get('__name__', '?'))
    return plain_import(name, globals, locals, fromlist, level)
builtins.__import__ = recording_import
import visft_mm.registry as visft_registry
import visft_mm.utils.cli  # tools/train.py's own visft_mm import
locations = sorted({
    location for value in vars(visft_registry).values()
    if isinstance(value, Registry) and value.scope == 'visft_mm'
    for location in value._locations})
for location in locations:
    importlib.import_module(location)
training = dict(locations=locations, modules=sorted(sys.modules),
                importers=sorted(importers))
cfg = Config.fromfile(sys.argv[1])
init_default_scope(cfg.default_scope)
resolved = {node.type: registry.get(node.type) is not None
            for registry, node in ((MODELS, cfg.model),
                                   (METRICS, cfg.test_evaluator))}
print(json.dumps(dict(training=training, resolved=resolved)))
'''
RESOLVED_CONFIG = EVAL_CONFIGS / 'evaclip_g_retrieval_coco.py'


@pytest.fixture(scope='module')
def fresh_interpreter() -> dict:
    result = subprocess.run(
        [sys.executable, '-c', FRESH_INTERPRETER,
         str(RESOLVED_CONFIG)],
        cwd=ROOT,
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_training_imports_no_benchmark_or_demo_code(fresh_interpreter):
    training = fresh_interpreter['training']
    assert training['locations'] == [
        'visft_mm.datasets', 'visft_mm.engine', 'visft_mm.evaluation',
        'visft_mm.models', 'visft_mm.visualization'
    ]
    unwanted = [
        name for name in training['modules']
        if name.split('.')[0] in ('open_clip', 'timm') or name.startswith((
            'visft_mm.benchmarks', 'visft_mm.demo'))
    ]
    assert not unwanted
    assert not [
        name for name in training['importers'] if name.startswith('visft_mm')
    ]


def test_a_benchmark_config_reaches_its_types_through_its_own_imports(
        fresh_interpreter):
    assert fresh_interpreter['resolved'] == {
        'visft_mm.EVACLIP': True,
        'visft_mm.Numpy2RetrievalRecall': True
    }


def test_benchmark_configs_import_the_benchmarks_they_register_into():
    """A benchmark config that names a type visft_mm.benchmarks registers
    imports that package itself (its children inherit the import); the
    others need no import beyond the training packages."""
    import visft_mm.benchmarks as benchmarks
    registered = [
        name for name in benchmarks.__all__
        if name != 'ImageNetVariant'  # named by import path
    ]
    naming = set()
    for path in sorted(EVAL_CONFIGS.glob('*.py')):
        text = path.read_text()
        names_one = any(f"type='visft_mm.{name}'" in text
                        for name in registered)
        imports = "imports=['visft_mm.benchmarks']" in text
        assert names_one == imports, path.name
        naming.update(name for name in registered
                      if f"type='visft_mm.{name}'" in text)
    assert naming == set(registered)
