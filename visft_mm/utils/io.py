"""File writing that never leaves a truncated checkpoint behind: the object is
saved to a temporary file next to the target and renamed over it at the end."""
import os
import tempfile

import torch


def save_atomic(obj, path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same
    directory, fsync'ed and moved into place with ``os.replace``; on any error
    the temporary file is removed and ``path`` is left untouched."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    fd, tmp_path = tempfile.mkstemp(
        prefix=f'.{name}.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
