"""Writing folders atomically (standard library only, so `data_prep/` scripts can
use it without importing TensorFlow)."""

import os
import shutil
import tempfile


def atomic_directory(path, write_fn):
    """Calls `write_fn(tmp_dir)` and renames `tmp_dir` to `path` on success.

    If `path` exists it is replaced only after the new content is complete.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        write_fn(tmp)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
