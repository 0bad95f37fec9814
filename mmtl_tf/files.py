"""Folders: the cache root and atomic writes (standard library only, so that
`data_prep/` scripts can use it without importing TensorFlow)."""

import os
import secrets
import shutil


def cache_root():
    """The cache folder's path, not created: `$MMTL_TF_CACHE`, else
    `~/.cache/mmtl_tf`."""
    return os.environ.get("MMTL_TF_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mmtl_tf")


def cache_dir(*parts):
    """The cache folder (created), or a path inside it (its parent created)."""
    root = cache_root()
    path = os.path.join(root, *parts)
    os.makedirs(path if not parts else os.path.dirname(path) or root, exist_ok=True)
    return path


def _new_sibling(parent, prefix):
    """Creates and returns a new empty folder `parent/prefix<random>`.

    Made with `os.mkdir`, so its permissions follow the umask like any new
    folder (`tempfile.mkdtemp` would make it private, mode 700, and the rename
    would carry that over to the published folder).
    """
    while True:
        path = os.path.join(parent, prefix + secrets.token_hex(4))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def atomic_directory(path, write_fn):
    """Calls `write_fn(tmp_dir)` and renames `tmp_dir` to `path` on success.

    `tmp_dir` is a new folder beside `path`. If `write_fn` raises, it is removed
    and an existing `path` is left as it was; if `path` exists it is replaced
    only after the new content is complete. The folder gets the permissions of
    any new folder (umask), not a temporary folder's private mode.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    name = os.path.basename(path)
    os.makedirs(parent, exist_ok=True)
    tmp = _new_sibling(parent, f".{name}.tmp-")
    try:
        write_fn(tmp)
        if os.path.exists(path):
            old = _new_sibling(parent, f".{name}.old-")
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


def atomic_file(path, write_fn, suffix=""):
    """Calls `write_fn(tmp_path)` and renames `tmp_path` to `path` on success.

    `tmp_path` is a new empty file beside `path` whose name ends in `suffix`
    (writers that pick the format from the extension need it, e.g. ".keras").
    It is created with the umask's permissions (`tempfile.mkstemp` would make
    it private, mode 600, and writers that reopen it keep that mode). If
    `write_fn` raises, `tmp_path` is removed and an existing `path` is left as
    it was.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    while True:
        tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
