"""Folders: the cache root and atomic writes (standard library only, so that
`data_prep/` scripts can use it without importing TensorFlow)."""

import json
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


def _new_file(path):
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def _new_sibling(parent, prefix, suffix="", create=os.mkdir):
    """Creates and returns a new empty folder (or, with `create=_new_file`, file)
    `parent/prefix<random>suffix`.

    Made with `os.mkdir` / `os.open(..., 0o666)`, so its permissions follow the
    umask like any new folder or file (`tempfile.mkdtemp` / `mkstemp` make them
    private, mode 700 / 600, and the rename would carry that over to the
    published path; writers that reopen a file keep its mode).
    """
    while True:
        path = os.path.join(parent, prefix + secrets.token_hex(4) + suffix)
        try:
            create(path)
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
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:  # a file (or link) that was at `path`
                os.remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def check_replaceable(path, marker, what):
    """Raises a `ValueError` unless `atomic_directory` may replace `path`
    without destroying anything else: `path` must be new, an empty folder, or
    a folder holding `marker` (a `what` written earlier, e.g. "run.json" of a
    run folder). So a mistyped output path (".", "", the run folder, a folder
    of your own) is refused instead of replaced."""
    if not os.fspath(path).strip():
        raise ValueError(f"empty path for the {what}; name a new folder.")
    if not os.path.lexists(path):
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        while not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):  # was "[Errno 17] File exists" from makedirs
            raise ValueError(f"{path}: {parent} is a file, not a folder; choose a folder "
                             f"for the {what}.")
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise ValueError(f"{path}: exists and is not a folder; choose a new folder for "
                         f"the {what}.")
    if os.listdir(path) and not os.path.exists(os.path.join(path, marker)):
        raise ValueError(
            f"{path}: exists, is not empty and is not a {what} (no {marker}); writing "
            f"the {what} replaces the folder, so choose a new or empty one.")


def atomic_file(path, write_fn, suffix=""):
    """Calls `write_fn(tmp_path)` and renames `tmp_path` to `path` on success.

    `tmp_path` is a new empty file beside `path` whose name ends in `suffix`
    (writers that pick the format from the extension need it, e.g. ".keras"),
    with the umask's permissions. If `write_fn` raises, `tmp_path` is removed
    and an existing `path` is left as it was.
    """
    path = os.path.abspath(os.fspath(path))
    tmp = _new_sibling(os.path.dirname(path), f".{os.path.basename(path)}.tmp-", suffix,
                       create=_new_file)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_json(obj, path, **dump_kwargs):
    """`json.dump(obj, f, **dump_kwargs)` into `path` (UTF-8) through `atomic_file`."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, **dump_kwargs)

    return atomic_file(path, write)
