"""The README's layout section names every module of visft_mm/ and nothing
that is gone."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_section() -> str:
    readme = (ROOT / 'README.md').read_text()
    return readme.split('## Layout\n', 1)[1].split('\n## ', 1)[0]


def test_layout_names_every_module():
    layout = layout_section()
    modules = sorted(
        path.relative_to(ROOT) for path in (ROOT / 'visft_mm').rglob('*.py')
        if path.name != '__init__.py')
    unnamed = [
        str(path) for path in modules
        if not re.search(rf'\b{re.escape(path.name)}\b', layout)
    ]
    assert not unnamed, f'README layout misses {unnamed}'
    packages = sorted({path.parent.name for path in modules} - {'visft_mm'})
    unnamed = [name for name in packages if f'{name}/' not in layout]
    assert not unnamed, f'README layout misses packages {unnamed}'


def test_layout_names_no_missing_module():
    layout = layout_section()
    names = set(re.findall(r'\b(\w+\.py)\b', layout))
    present = {
        path.name
        for folder in ('visft_mm', 'tools', 'tests')
        for path in (ROOT / folder).rglob('*.py')
    }
    assert not names - present, (
        f'README layout names files that do not exist: {names - present}')
