"""The tree passes the project's lint (setup.cfg; `make lint` runs the same
tools through .pre-commit-config.yaml), so a change with lint errors fails
`make test` and CI."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tracked_python_files():
    listed = subprocess.run(['git', 'ls-files', '--', '*.py'],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            check=True).stdout.split()
    return [path for path in listed if (ROOT / path).exists()]


@pytest.mark.parametrize(
    'tool', [
        ['flake8'],
        ['isort', '--check-only', '--diff'],
        ['yapf', '--diff', '--parallel'],
    ],
    ids=['flake8', 'isort', 'yapf'])
def test_tree_is_lint_clean(tool):
    files = tracked_python_files()
    assert files, 'git lists no python files'
    result = subprocess.run([str(BIN / tool[0]), *tool[1:], *files],
                            cwd=ROOT,
                            capture_output=True,
                            text=True)
    report = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not report, (
        f'{tool[0]} finds lint errors; `make lint` fixes what isort and yapf '
        f'can:\n{report[:4000]}')
