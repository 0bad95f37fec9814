"""Folders: the cache root and atomic writes (standard library and
`mmtl_tf.errors` only, so that `data_prep/` scripts can use it without
importing TensorFlow)."""

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import stat
import sys
import warnings

from mmtl_tf.errors import KeptFilesWarning

try:
    import fcntl
except ImportError:  # Windows: no flock; folders left by killed writes stay
    fcntl = None


def user_path(path):
    """`path` (str or path-like) as a str, with a leading `~` or `~user` made
    that home folder, as a shell does unquoted: a quoted `--data "~/photos"`,
    a recipe's or a notebook's path. Other paths as given; "~" in the middle
    of a name (`a~b`) is left alone."""
    path = os.fspath(path)
    return os.path.expanduser(path) if isinstance(path, str) and path.startswith("~") else path


def cache_root():
    """The cache folder's path, not created: `$MMTL_TF_CACHE`, else
    `~/.cache/mmtl_tf`."""
    return os.environ.get("MMTL_TF_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mmtl_tf")


def _cache_problem(root, error):
    """The message for a cache folder `root` that cannot be used."""
    given = os.environ.get("MMTL_TF_CACHE")
    where = "MMTL_TF_CACHE" if given else "the default cache folder"
    why = ("a file, not a folder" if os.path.lexists(root) and not os.path.isdir(root)
           else error.strerror or str(error))
    return (f"{root}: cannot be the mmtl_tf cache ({where}): {why}; set MMTL_TF_CACHE to a "
            "folder you can write" + (", or unset it for ~/.cache/mmtl_tf." if given else "."))


def check_cache_root():
    """A `ValueError` naming the cache folder (`cache_root`, and
    MMTL_TF_CACHE when it comes from there) unless it is a folder or one can
    be made there. The CLI checks it before TensorFlow loads: a file there
    was "[Errno 17] File exists", exit 1, after the data was read (a folder
    that could not be made exit 2, both without naming MMTL_TF_CACHE). An
    existing folder passes even if read-only: a shared cache filled with the
    weights is only read (a write into it fails naming the file)."""
    root = cache_root()
    if os.path.isdir(root):
        return
    try:
        check_can_create_folders(root)
    except OSError as e:
        raise ValueError(_cache_problem(root, e)) from None


def cache_dir(*parts):
    """The cache folder (created), or a path inside it (its parent created)."""
    root = cache_root()
    path = os.path.join(root, *parts)
    try:
        os.makedirs(path if not parts else os.path.dirname(path) or root, exist_ok=True)
    except OSError as e:
        if os.path.isdir(root):
            raise  # inside a usable cache: the error names the path
        raise ValueError(_cache_problem(root, e)) from None
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


# The lock file in a folder that a process is writing (a staging folder of
# `atomic_directory`, a folder of cache files of `--cache DIR`): the writer
# holds an exclusive flock on it for as long as it uses the folder, and its
# process ending, however it ends (SIGKILL, the OOM killer), frees the lock.
# A folder whose lock can be taken is dead: `remove_if_dead`.
LOCK_FILE = "mmtl_tf.lock"


def _new_locked_folder(parent, prefix):
    """Creates a new folder `parent/prefix<random>` holding `LOCK_FILE`, locked
    by this process (flock, exclusive): (folder, the lock's descriptor, to be
    closed when the folder is published or removed).

    Another process's `remove_if_dead` may take the lock between its creation
    and the flock here (and remove the folder): the flock then waits for it,
    and a lock file that is gone by then means a new folder is made. A folder
    is never removed before its lock file exists (`remove_if_dead` leaves a
    folder without one)."""
    while True:
        folder = _new_sibling(parent, prefix)
        lock = None
        try:
            lock = os.open(os.path.join(folder, LOCK_FILE),
                           os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            if fcntl is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                except OSError:
                    # A file system without flock: `remove_if_dead` cannot
                    # take the lock either, so it leaves this folder alone.
                    pass
            if os.path.lexists(os.path.join(folder, LOCK_FILE)):  # its name is never reused
                return folder, lock
        except FileNotFoundError:  # the folder was removed before the lock file was made
            pass
        except BaseException:
            if lock is not None:
                os.close(lock)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if lock is not None:  # removed by another process's clean-up: make another
            os.close(lock)


def remove_if_dead(folder):
    """Removes `folder` if it holds `LOCK_FILE` and its lock can be taken
    without waiting (its writer is gone: killed, or its machine crashed),
    holding the lock while it removes it. Returns True when removed, False
    when the lock is held (its writer goes on) or cannot be taken for another
    reason (no permission, no flock on that file system), None when `folder`
    holds no lock file (or this system has no flock): the caller decides."""
    if fcntl is None:
        return None
    try:
        lock = os.open(os.path.join(folder, LOCK_FILE), os.O_WRONLY)
    except FileNotFoundError:
        return None
    except OSError:  # cannot tell
        return False
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its writer goes on (or no flock here: cannot tell)
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    finally:
        os.close(lock)


def _remove_dead_leftovers(parent, name):
    """Removes the leftovers `parent/.NAME.tmp-XXXXXXXX` and `.NAME.old-XXXXXXXX`
    (of this `name` only) of an `atomic_directory` call that was killed
    (SIGKILL, the OOM killer, a power cut) before it could clean up: those
    whose lock its writer no longer holds (`remove_if_dead`). One without a
    lock file is left: a staging folder of an earlier mmtl_tf (which may
    still run), a complete one killed during the swap, or an earlier copy
    of `name` moved aside by a swap that was killed before the new content
    was in place (then the only copy of it)."""
    leftover = re.compile(re.escape(f".{name}.") + r"(?:tmp|old)-[0-9a-f]{8}")
    remove_dead_folders(parent, leftover.fullmatch)


def remove_dead_folders(parent, is_candidate, without_lock=None):
    """Removes the folders (not links) in `parent` whose name `is_candidate`
    accepts and whose writer is gone (`remove_if_dead`). For one that holds
    no lock file (or where this system has no flock), `without_lock(name)`
    decides whether it goes; without it, such a folder is left."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        if not is_candidate(name) or os.path.islink(path) or not os.path.isdir(path):
            continue
        if remove_if_dead(path) is None and without_lock is not None and without_lock(name):
            shutil.rmtree(path, ignore_errors=True)


def missing_top(path):
    """The topmost folder of the absolute `path` that does not exist (what
    `os.makedirs(path)` creates first), or None if `path` exists."""
    top = None
    while not os.path.lexists(path):
        top, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return top


def missing_parent(path):
    """The folder that should hold the new folder `path` (made absolute) if it
    does not exist, so that creating `path` would create it too; None if
    `path` or that folder is a folder. `--cache DIR` and a recipe's `"cache"`
    take a new folder only in an existing one (a mistyped parent is refused
    instead of created)."""
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    if os.path.isdir(path) or os.path.isdir(parent):
        return None
    return parent


def remove_empty_folders(path, top):
    """Removes the folder `path` and those above it up to `top` (`path` or a
    folder above it) while they are empty."""
    while True:
        try:
            os.rmdir(path)
        except OSError:  # not empty, or gone
            return
        if path == top or os.path.dirname(path) == path:
            return
        path = os.path.dirname(path)


def check_can_create_folders(path):
    """Raises the `OSError` of creating a folder in `path`, or, where `path`
    does not exist, of creating it (and the missing folders above it).
    Creates a probe folder and removes it (and what it created): `os.access`
    says yes to root in special and read-only file systems, e.g. `/sys`."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        os.rmdir(_new_sibling(path, ".mmtl_tf-probe-"))
        return
    top = missing_top(path)
    try:
        os.makedirs(path)
    finally:
        if top:  # from the deepest folder that makedirs created, also if it failed
            deepest = path
            while deepest != top and not os.path.isdir(deepest):
                deepest = os.path.dirname(deepest)
            remove_empty_folders(deepest, top)


def _lock_swaps(parent):
    """Takes the exclusive flock on the folder `parent` itself (no file is
    made in it) that `atomic_directory` holds while it swaps a folder in
    `parent` and that `swap_lock` takes: the descriptor, to be closed to let
    go; None where it cannot be taken (no flock on this system or that file
    system, a folder this process may not read), and nothing is locked."""
    if fcntl is None:
        return None
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException as e:  # Ctrl-C while waiting, too
        os.close(fd)
        if isinstance(e, OSError):  # e.g. NFS, where flock needs a file open for writing
            return None
        raise
    return fd


@contextlib.contextmanager
def swap_lock(*paths):
    """Within the block, no `atomic_directory` replaces (or creates) a folder
    in the folder holding any of `paths`: a check of what a path holds and a
    write into it (`mmtl_tf.tasks.common.write_metrics`) are one step with
    respect to the swap, so the write lands in the folder that was checked,
    never in one that replaced it. A swap that is due waits for the block to
    end (flock on the holding folders; where there is none, nothing waits).

    Give a path as it is written and, if it goes through a link, as its real
    path too: `train --out` locks the folder holding the path it was given,
    which for a link `runs/latest -> /data/run7` is `runs/` when the link
    itself is replaced and `/data` when `--out /data/run7` is. Folders that
    are one folder (by device and inode) are locked once, and in one order,
    so that two blocks never wait for each other."""
    parents = {}
    for path in paths:
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        try:
            info = os.stat(parent)
        except OSError:
            continue
        parents.setdefault((info.st_dev, info.st_ino), parent)
    fds = []
    try:
        for key in sorted(parents):
            fds.append(_lock_swaps(parents[key]))
        yield
    finally:
        for fd in fds:
            _unlock(fd)


def file_identity(path):
    """What identifies a file or folder however it is reached (links, `./`,
    `..`): its (device, inode), one `stat` (`realpath` takes one per path
    component); its real path when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (info.st_dev, info.st_ino)


def atomic_directory(path, write_fn, keep_replaced=None):
    """Calls `write_fn(tmp_dir)` and renames `tmp_dir` to `path` on success.

    `tmp_dir` is a new folder beside `path`. If `write_fn` raises, it is removed
    and an existing `path` is left as it was; if `path` exists it is replaced
    only after the new content is complete: it is renamed to a hidden
    `.NAME.old-…` beside it, `tmp_dir` is renamed to `path`, and the old copy
    is removed. If the second rename fails (or Ctrl-C lands between the two),
    the old copy is renamed back, so `path` never disappears; if removing the
    old copy fails, a `RuntimeWarning` names what is left. The folder gets the
    permissions of any new folder (umask), not a temporary folder's private
    mode. An `OSError` of the write names `path`, not the temporary name.

    Until it is renamed, `tmp_dir` holds `LOCK_FILE`, locked by this process
    (removed just before the rename, so `path` never holds it), and so does
    the old copy while it is removed: a later call for the same `path` first
    removes those that a killed process left (`_remove_dead_leftovers`).
    `write_fn` must neither write nor remove `LOCK_FILE` in `tmp_dir`.

    The swap (the renames, and putting the old content back if they fail)
    holds `swap_lock`'s lock on the folder holding `path`, so a check and
    write under `swap_lock` (`mmtl_tf.tasks.common.write_metrics`) never has
    `path` swapped in between.

    `keep_replaced(old)`, if given, is called once the new content is in
    place (lock released) with the path of the replaced content, before it
    is removed; it is not called when `path` did not exist. Nothing that
    names `path` reaches `old` any more, so what it finds there is all that
    the removal would delete. It returns None (remove `old`, as without it)
    or `(keep, announce)` (see `added_meanwhile`): `old` is renamed to a new
    visible sibling `NAME.replaced-XXXXXXXX` (left where it is if that
    fails), the entries of it not in the list `keep` are removed from it
    (`keep=None`: nothing is), and `announce(kept_path)` is called, e.g. to
    warn. So files put into `path` while `write_fn` ran, which a check
    before writing could not see, need not be deleted with the old content.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    name = os.path.basename(path)
    existed = os.path.lexists(path)
    tmp = old = lock = swap = None
    made = missing_top(parent)  # the folders above `path` this call creates
    try:
        os.makedirs(parent, exist_ok=True)
        _remove_dead_leftovers(parent, name)
        tmp, lock = _new_locked_folder(parent, f".{name}.tmp-")
        write_fn(tmp)
        try:
            os.remove(os.path.join(tmp, LOCK_FILE))  # `lock` stays held until the end
        except FileNotFoundError:
            pass
        swap = _lock_swaps(parent)
        if os.path.lexists(path):
            old = _new_sibling(parent, f".{name}.old-")
            os.rmdir(old)
            try:
                os.replace(path, old)
            except OSError as e:  # an immutable folder, a mount point, ...
                old = None
                raise OSError(e.errno, f"{e.strerror or e}: cannot write {path}: it could "
                                       "not be renamed aside to be replaced (a mount point? "
                                       "an immutable folder?); write into a new folder, or "
                                       "one inside it") from e
            os.replace(tmp, path)
            moved, old = old, None  # from here on the new content is in place
            held, swap = swap, None
            _unlock(held)  # other swaps need not wait for the removal
            try:
                kept = keep_replaced(moved) if keep_replaced is not None else None
            except Exception as e:  # the new content is in place: keep all, and say so
                kept = None, functools.partial(_kept_after_failed_check, path, e)
            if kept is None:
                _remove_old_copy(moved, path)
            else:
                _keep_replaced_copy(moved, path, *kept)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        if old is not None and os.path.lexists(old) and not os.path.lexists(path):
            try:
                os.replace(old, path)  # put the earlier content back
            except OSError as undo:
                warnings.warn(f"{path}: could not be put back after a failed replace "
                              f"({undo}); its earlier content is in {old}.", RuntimeWarning,
                              stacklevel=2)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if made:  # a failed `train` left an empty `runs/` behind
            remove_empty_folders(parent, made)
        if isinstance(e, OSError):
            raise _naming_target(e, tmp, path, existed and os.path.lexists(path)) from e
        raise
    finally:
        _unlock(swap)
        if lock is not None:
            os.close(lock)
    return path


def _unlock(fd):
    """Closes the descriptor of `_lock_swaps` (None: nothing)."""
    if fd is not None:
        os.close(fd)


# shutil.rmtree's onerror= is deprecated from Python 3.12 (a DeprecationWarning
# per call); its replacement onexc= does not exist before.
_RMTREE_TAKES_ONEXC = sys.version_info >= (3, 12)


def _onexc_adapter(report):
    """An `onexc=` callback for `shutil.rmtree` (Python >= 3.12, which hands
    it the exception) that calls `report(path, exception)`."""
    def onexc(function, path, exception):
        report(path, exception)
    return onexc


def _onerror_adapter(report):
    """An `onerror=` callback for `shutil.rmtree` (Python 3.11, which hands
    it `sys.exc_info()`) that calls `report(path, exception)`."""
    def onerror(function, path, exc_info):
        report(path, exc_info[1])
    return onerror


def rmtree_reporting(path, report):
    """`shutil.rmtree(path)` that goes on past what it cannot remove and calls
    `report(path_of_that_entry, exception)` for each: through `onexc=` where
    Python has it (3.12 on), else through `onerror=`."""
    if _RMTREE_TAKES_ONEXC:
        shutil.rmtree(path, onexc=_onexc_adapter(report))
    else:
        shutil.rmtree(path, onerror=_onerror_adapter(report))


def _remove_old_copy(old, path):
    """Removes the replaced content `old` of `path`; warns naming what is left
    instead of leaving it silently (a folder whose files may not be removed).

    A folder gets `LOCK_FILE`, locked, before anything in it is removed, and
    loses it last: if this process is killed meanwhile (a large run takes a
    while), a later call removes the rest (`_remove_dead_leftovers`). Only
    here, with the new content in place, does an old copy get a lock file:
    one moved aside by a swap that did not finish is kept."""
    failed = []

    def report(p, error):
        failed.append((p, error))

    if os.path.isdir(old) and not os.path.islink(old):
        lock = None
        if fcntl is not None:
            try:
                lock = os.open(os.path.join(old, LOCK_FILE),
                               os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a folder that may not be changed, or no flock here
                pass
        try:
            if lock is not None:  # everything but the lock file first
                _remove_entries(old, (LOCK_FILE,), report)
            rmtree_reporting(old, report)
        finally:
            if lock is not None:
                os.close(lock)
    else:  # a file (or link) that was at `path`
        try:
            os.remove(old)
        except OSError as e:
            failed.append((old, e))
    if failed and os.path.lexists(old):
        where, error = failed[0]
        warnings.warn(f"{path} was replaced, but its earlier copy could not be removed "
                      f"({where}: {getattr(error, 'strerror', None) or error}); it is left "
                      f"in {old}: remove it yourself.", RuntimeWarning, stacklevel=3)


def _remove_entries(folder, keep, report):
    """Removes every entry of `folder` whose name is not in `keep` (folders
    with all they hold), going on past what cannot be removed and calling
    `report(path, exception)` for each."""
    for name in os.listdir(folder):
        if name in keep:
            continue
        entry = os.path.join(folder, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
            rmtree_reporting(entry, report)
        else:
            try:
                os.remove(entry)
            except OSError as e:
                report(entry, e)


def _keep_replaced_copy(old, path, keep, announce):
    """`atomic_directory`'s replaced content `old` of `path`, kept: renamed to
    a visible `NAME.replaced-XXXXXXXX` beside it (a name that no clean-up of
    leftovers matches; if the rename fails it stays at `old`, which
    `_remove_dead_leftovers` leaves too, holding no lock file, though a
    check of the folder holding it counts it as a leftover), then
    `announce(where it is)`, then the entries not in `keep` are removed
    from it (all are kept when `keep` is None)."""
    parent, name = os.path.split(path)
    try:
        kept = _new_sibling(parent, f"{name}.replaced-")
        os.rmdir(kept)
        os.replace(old, kept)
    except OSError:
        kept = old
    announce(kept)
    failed = []
    if keep is not None and os.path.isdir(kept) and not os.path.islink(kept):
        _remove_entries(kept, keep, lambda p, error: failed.append((p, error)))
    if failed:
        where, error = failed[0]
        warnings.warn(f"{kept}: what the replaced {name} held besides the files kept could "
                      f"not all be removed ({where}: "
                      f"{getattr(error, 'strerror', None) or error}).", RuntimeWarning,
                      stacklevel=3)


def _kept_after_failed_check(path, error, kept):
    """The announcement of `atomic_directory` when its `keep_replaced` raised
    `error`: the replaced content is kept whole, in `kept`."""
    warnings.warn(f"{path} was replaced; what it held before is kept in {kept}, since "
                  f"checking it for files to keep failed ({type(error).__name__}: {error}).",
                  RuntimeWarning, stacklevel=4)


def _naming_target(error, tmp, path, existed):
    """`error` (an `OSError` while writing `path` through the temporary `tmp`)
    as an error of the same kind that names `path` instead of `tmp` and says
    that an earlier `path` is unchanged; `error` itself if it names another
    file (its own message says which)."""
    names = [os.fspath(n) for n in (error.filename, error.filename2) if n is not None]
    if tmp is not None and names and not any(n.startswith(tmp) for n in names):
        return error
    reason = error.strerror or str(error)
    if tmp is not None:
        reason = reason.replace(tmp, path)
    where = names[0].replace(tmp, path) if names and tmp is not None else path
    # An inner atomic write (a file in a staging folder) already said which file.
    message = reason if "cannot write " in reason else f"{reason}: cannot write {where}"
    if existed:
        message += f"; {path} is unchanged"
    return type(error)(error.errno, message) if error.errno is not None else type(error)(message)


def message_naming_target(message, tmp, path, existed):
    """`message` of an error that is no `OSError` (e.g. TensorFlow's
    `ResourceExhaustedError` when the disk fills during an export), raised
    while writing `path` through the temporary `tmp`, naming `path` instead of
    `tmp`: the first line that named `tmp` ends in ": cannot write PATH" (and
    "; PATH is unchanged" if `existed`), as `_naming_target` words an
    `OSError`. None if `message` does not name `tmp`."""
    if tmp is None or tmp not in message:
        return None
    lines = message.split("\n")
    first = next(i for i, line in enumerate(lines) if tmp in line)
    lines = [line.replace(tmp, path) for line in lines]
    lines[first] += f": cannot write {path}" + (f"; {path} is unchanged" if existed else "")
    return "\n".join(lines)


# What tf.saved_model.save writes (keras.export.ExportArchive.write_out), plus
# the SavedModel that mmtl_tf.export.export_text_classifier puts inside
# (`tokens_only/`). TensorFlow Serving's `assets.extra/` (warm-up requests) is
# not among them: a folder of your own, kept from being replaced.
SAVED_MODEL_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets")
NESTED_SAVED_MODELS = ("tokens_only",)
# What a SavedModel's own sub-folders hold (`foreign_entries`).
_OWN_CONTENT = {"variables": re.compile(r"^variables\.(index|data-\d{5}-of-\d{5})$")}

# A leftover of an atomic write that was killed (SIGKILL, a power cut) before
# it could clean up: `.NAME.tmp-XXXXXXXX[suffix]` or `.NAME.old-XXXXXXXX`.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-[0-9a-f]{8}(?:\.[A-Za-z0-9]+)?$")


# What file managers write into the folders they show: Finder's `.DS_Store`
# (and `._NAME` files beside NAME on volumes without Mac metadata), Windows
# Explorer's `Thumbs.db` and `desktop.ini`, KDE's `.directory`. A run folder
# or export looked at in one is still only what mmtl_tf wrote, and a folder
# made in Finder is still empty.
_FILE_MANAGER_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", ".directory"})


def _is_file_manager_file(folder, name):
    """Whether `name` in `folder` is a plain file of a file manager's."""
    if name.lower() not in _FILE_MANAGER_FILES and not name.startswith("._"):
        return False
    try:
        return stat.S_ISREG(os.lstat(os.path.join(folder, name)).st_mode)
    except OSError:
        return False


def entries(folder):
    """`os.listdir(folder)` without the files that file managers write
    (`.DS_Store`, `Thumbs.db`, ...): the folder's content as the user sees it,
    for deciding whether it is empty or only what mmtl_tf wrote."""
    return [name for name in os.listdir(folder) if not _is_file_manager_file(folder, name)]


def foreign_entries(folder, own, nested=None):
    """The names in `folder` (sorted) that are none of `own`, no leftover of an
    atomic write killed before it could clean up (`.NAME.tmp-…`, `.NAME.old-…`,
    e.g. of an export into a sub-folder), no file of a file manager's
    (`entries`) and no sub-folder for which `nested(sub_folder_path)` is
    true."""
    found = []
    for name in sorted(entries(folder)):
        path = os.path.join(folder, name)
        if _LEFTOVER.match(name):
            continue
        if name in own:
            # A SavedModel's variables/ holds only TensorFlow's checkpoint
            # files: another file there was deleted with the folder.
            pattern = _OWN_CONTENT.get(name)
            if pattern is not None and os.path.isdir(path) and not os.path.islink(path):
                found += [f"{name}/{inner}" for inner in sorted(entries(path))
                          if not pattern.match(inner)]
            continue
        if nested is not None and nested(path):
            continue
        if name in NESTED_SAVED_MODELS and os.path.isfile(os.path.join(path, "saved_model.pb")) \
                and not os.path.islink(path):
            # Name what is foreign inside (it said "holds tokens_only, which
            # no SavedModel writes", of a folder the export writes itself).
            inner = foreign_entries(path, SAVED_MODEL_ENTRIES, nested_saved_model)
            if inner:
                found += [f"{name}/{entry}" for entry in inner]
                continue
        found.append(name)
    return found


def added_meanwhile(path, own, nested, writer, what_finished):
    """What replacing the folder at `path` would delete that no `writer`
    writes, as `(reason, keep)`, or None when there is nothing of the kind.
    For the `keep_replaced` of an `atomic_directory` writer: `path` was
    checked (`check_replaceable`) when writing started, but what was put
    there meanwhile would be deleted with the old content.

    `keep` lists the entries that are not `own` (as `check_replaceable`
    counts them: `foreign_entries`), e.g. reason "held notes.txt when this
    training finished, which no run writes"; `keep` is None (keep it all)
    when `path` is no folder (a file or a link) or cannot be listed.
    """
    if os.path.islink(path) or not os.path.isdir(path):
        kind = "link" if os.path.islink(path) else "file"
        return f"was a {kind}, not a folder, when {what_finished}", None
    try:
        foreign = foreign_entries(path, own, nested)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return f"could not be read when {what_finished} ({where}{e.strerror or e})", None
    if not foreign:
        return None
    return f"held {_listed(foreign)} when {what_finished}, which no {writer} writes", foreign


def kept_files_warning(path, reason, keep, kept, new_what):
    """The `KeptFilesWarning` that says where `atomic_directory` kept what
    `added_meanwhile` found (`reason`, `keep`) in the replaced `path`: in
    `kept`, beside the new `new_what` (e.g. "run")."""
    if keep is None:
        what = "what it held is"
    else:
        what = f"{_listed(keep)} {'is' if len(keep) == 1 else 'are'}"
    return KeptFilesWarning(f"{path}: {reason}; the new {new_what} replaced it, and {what} "
                            f"kept in {kept} (remove that when you no longer need it).")


def keep_added(path, old, own, nested, writer, what_finished, new_what):
    """An answer of `atomic_directory`'s `keep_replaced(old)` for a writer of
    `path`: None when the replaced content `old` holds nothing that no
    `writer` writes (`added_meanwhile`), else `(keep, announce)`, where
    `announce(kept)` warns with `kept_files_warning`."""
    added = added_meanwhile(old, own, nested, writer, what_finished)
    if added is None:
        return None
    reason, keep = added
    return keep, lambda kept: warnings.warn(
        kept_files_warning(path, reason, keep, kept, new_what), stacklevel=2)


def is_saved_model(path):
    """Whether `path` is a folder that only a SavedModel export wrote:
    saved_model.pb and nothing but `SAVED_MODEL_ENTRIES` (and
    `NESTED_SAVED_MODELS` that are SavedModels themselves)."""
    if not os.path.isdir(path) or os.path.islink(path) or \
            not os.path.isfile(os.path.join(path, "saved_model.pb")):
        return False
    return not foreign_entries(path, SAVED_MODEL_ENTRIES, nested_saved_model)


def nested_saved_model(path):
    """Whether `path` is a SavedModel that an export puts inside its own
    (`NESTED_SAVED_MODELS`, e.g. `tokens_only/`)."""
    return os.path.basename(path) in NESTED_SAVED_MODELS and is_saved_model(path)


def _read_only_folder(path):
    """The first folder that replacing `path` must change and this process may
    not (write and search), or None: the folder holding `path` (which the
    replacement renames it in) and every non-empty folder in `path` (itself
    included), whose entries it removes. Without the check, a folder whose
    entries may not be removed was renamed away, the new content put in
    place, and the old copy left behind, hidden."""
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.access(parent, os.W_OK | os.X_OK):
        return parent
    for folder, subfolders, files in os.walk(path):
        if (subfolders or files) and not os.access(folder, os.W_OK | os.X_OK):
            return folder
        subfolders[:] = [d for d in subfolders if not os.path.islink(os.path.join(folder, d))]
    return None


def _holds_working_folder(path):
    """Why `path` is the current working folder or a folder above it (so
    replacing it would delete the folder the process, and the shell that
    started it, work in), or None."""
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working folder was deleted already
        return None
    target = os.path.realpath(os.fspath(path))
    if target == cwd:
        return "is the current folder"
    if cwd.startswith(target.rstrip(os.sep) + os.sep):
        return f"holds the current folder ({cwd})"
    return None


def _check_creatable(path, existing, what, option):
    """Raises a `ValueError` if this process may not create folders in
    `existing`, the nearest existing folder above the new `path`
    (`check_can_create_folders`: a probe folder, made and removed, since
    `os.access` says yes to root). Before, training set up (data loaded, a
    model built) and then failed with "Permission denied: cannot write PATH"
    (status 1), where an existing folder that may not be changed was refused
    up front."""
    try:
        check_can_create_folders(existing)
    except OSError as e:
        raise ValueError(
            f"{path}: cannot create folders in {existing} ({e.strerror or e}), so the "
            f"{what} cannot be written there; choose {option} or make it writable.") from None


def _listed(names, count=5, noun=""):
    """"a, b, c and 4 more [NOUN]": at most `count` of `names`."""
    shown = ", ".join(names[:count])
    more = f" and {len(names) - count} more" + (f" {noun}" if noun else "")
    return shown + (more if len(names) > count else "")


def check_replaceable(path, marker, what, own=(), nested=None, check_marker=None,
                      option="a new folder"):
    """Raises a `ValueError` unless `atomic_directory` may replace `path`
    without destroying anything else: `path` must be new, an empty folder
    (files that file managers write, such as `.DS_Store`, aside), or
    a `what` written earlier: a folder holding `marker` (e.g. "run.json" of a
    run folder) for which `check_marker(marker_path)` returns no reason to
    refuse (a str), and nothing but `marker`, the entries `own` (the names a
    `what` writes, and leftovers `.NAME.tmp-…` of their atomic writes) and
    sub-folders for which `nested(sub_path)` is true. So a mistyped output
    path (".", "", a folder of your own, one with a `marker` of your own) is
    refused instead of replaced, and so is a `what` to which you added files:
    they would be deleted. An existing folder that this process may not
    change (no write permission on it or on a folder in it) is refused too.
    `option`: what to choose instead, e.g. "another --out".
    """
    if not os.fspath(path).strip():
        raise ValueError(f"empty path for the {what}; name a new folder.")
    holds = _holds_working_folder(path)
    if holds:
        raise ValueError(
            f"{path}: {holds}; writing the {what} replaces the whole folder (the shell "
            f"would be left in a deleted folder), so choose {option}.")
    if not os.path.lexists(path):
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        while not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):  # was "[Errno 17] File exists" from makedirs
            raise ValueError(f"{path}: {parent} is a file, not a folder; choose a folder "
                             f"for the {what}.")
        _check_creatable(path, parent, what, option)
        return
    if os.path.islink(path):
        # Replacing it would replace the link, not the folder it points to.
        raise ValueError(f"{path}: a symbolic link (to {os.readlink(path)}); the {what} is "
                         f"not written through links: give the folder itself, or choose "
                         f"{option} for the {what}.")
    if not os.path.isdir(path):
        raise ValueError(f"{path}: exists and is not a folder; choose {option} for "
                         f"the {what}.")
    if os.path.ismount(path):
        # (A Docker volume where TF Serving reads: the whole export was
        # written, then "[Errno 16] Device or resource busy" naming a hidden
        # .NAME.old-… folder.)
        raise ValueError(
            f"{path}: a mount point; writing the {what} replaces the folder by renaming "
            f"it, which a mount point cannot be; write it into a folder inside it, e.g. "
            f"{os.path.join(os.fspath(path), '1')} (TF Serving reads version folders such "
            f"as 1/), or choose {option}.")
    if entries(path):
        marker_path = os.path.join(path, marker)
        reason = f"no {marker}" if not os.path.isfile(marker_path) else \
            check_marker(marker_path) if check_marker is not None else None
        if reason:
            raise ValueError(
                f"{path}: exists, is not empty and is not a {what} ({reason}); writing "
                f"the {what} replaces the folder, so choose {option} or an empty one.")
        foreign = foreign_entries(path, (marker, *own), nested)
        if foreign:
            raise ValueError(
                f"{path}: holds {_listed(foreign)}, which no {what} writes; writing the "
                f"{what} replaces the whole folder and would delete them, so choose "
                f"{option} or move them out first.")
    read_only = _read_only_folder(path)
    if read_only:
        which = f"this {what}" if read_only == os.fspath(path) else read_only
        raise ValueError(
            f"{path}: {which} may not be changed (no write permission), so it cannot be "
            f"replaced; choose {option} or make it writable.")


def atomic_file(path, write_fn, suffix=""):
    """Calls `write_fn(tmp_path)` and renames `tmp_path` to `path` on success.

    `tmp_path` is a new empty file beside `path` whose name ends in `suffix`
    (writers that pick the format from the extension need it, e.g. ".keras"),
    with the umask's permissions. If `write_fn` raises, `tmp_path` is removed
    and an existing `path` is left as it was. An `OSError` (no permission, a
    full disk) names `path`, not `tmp_path`, and says whether an earlier
    `path` is unchanged.
    """
    path = os.path.abspath(os.fspath(path))
    existed = os.path.lexists(path)
    tmp = None
    try:
        tmp = _new_sibling(os.path.dirname(path), f".{os.path.basename(path)}.tmp-", suffix,
                           create=_new_file)
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise _naming_target(e, tmp, path, existed) from e
        raise
    return path


def atomic_json(obj, path, **dump_kwargs):
    """`json.dump(obj, f, **dump_kwargs)` into `path` (UTF-8) through `atomic_file`."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, **dump_kwargs)

    return atomic_file(path, write)
