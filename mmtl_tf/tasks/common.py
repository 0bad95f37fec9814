"""Run-folder bookkeeping shared by the tasks."""

import atexit
import contextlib
import contextvars
import datetime
import difflib
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import warnings
import zipfile

import keras

from mmtl_tf import __version__, runtime
from mmtl_tf.data.sources import SPLITS, unsplit_rows_in
from mmtl_tf.errors import (DataError, RunReplacedWarning, check_on_error, collect_problems,
                            raise_collected_problems)
from mmtl_tf.files import (_new_locked_folder, atomic_directory, check_can_create_folders,
                           check_replaceable, entries, is_saved_model, keep_added, missing_parent,
                           missing_top, remove_dead_folders, remove_empty_folders, swap_lock,
                           user_path)
from mmtl_tf.recipes import load_recipe
from mmtl_tf.saving import global_dtype_policy, keras_archive_config
from mmtl_tf.training import BEST_STATE_FILE, atomic_write_json, read_json

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
# Every top-level name that a run writes into its folder (grep the tasks for
# `os.path.join(run_dir, ...)`); `check_run_dir` refuses to replace a run
# folder holding anything else, and a test trains each task and compares.
RUN_ENTRIES = (
    RUN_FILE,                # start_run / update_run
    METRICS_FILE,            # write_metrics
    "model.keras",           # every task (training.save_model_atomic)
    "best.keras",            # training.fit's AtomicModelCheckpoint
    BEST_STATE_FILE,         # ... its best value, for a resumed fit
    "backup",                # training.fit(backup=True): BackupAndRestore
    "history.json",          # every task
    "curves.png",            # training.plot_curves
    "text_vectorizer.json",  # fusion, audio-text, dual-encoder (LSTM text tower)
    "text_preprocessor",     # dual-encoder with a BERT-family text tower
    "preprocessor.json",     # text-classifier: BertPreprocessor.save(run_dir)
    "tokenizer_assets",      # ... and its vocabulary
)


# ---- `cache`: where the decoded images / audio of the datasets are kept.

CACHE_CHOICES = ("memory", "none")
CACHE_PREFIX = "mmtl_tf-cache-"
# The current train/evaluate call's file-cache state (see `cache_scope`).
_CACHE_SCOPE = contextvars.ContextVar("mmtl_tf_cache_scope", default=None)


def check_cache(value, where="cache"):
    """`value` if it is a valid `cache` setting: "memory" (decoded files kept in
    memory, the default), "none" (decoded again every epoch) or a folder path
    for tf.data cache files (an existing folder, or a new one to create);
    else a `ValueError`."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} = {json.dumps(value)}: should be 'memory', 'none' or a "
                         "folder for cache files.")
    if value.strip().lower() in CACHE_CHOICES and value not in CACHE_CHOICES:
        # "MEMORY" or "None" meant the choice; as a folder name it made a
        # folder of cache files in the current folder without a word.
        raise ValueError(f"{where} = {value!r}: write {value.strip().lower()!r} (lower case) "
                         f"for that choice, or ./{value.strip()} for a folder of that name.")
    value = user_path(value)
    if value not in CACHE_CHOICES and os.path.lexists(value) and not os.path.isdir(value):
        raise ValueError(f"{where} = {value!r}: exists and is not a folder; give 'memory', "
                         "'none' or a folder for cache files.")
    return value


def check_cache_folder(value, where="cache"):
    """`value`, a `cache` setting; for a folder, a `ValueError` naming `where`
    unless this process can create folders in it (or create it): checked up
    front by creating and removing a probe folder, instead of an `OSError`
    once the first dataset is built."""
    if check_cache(value, where) not in CACHE_CHOICES:
        try:
            check_can_create_folders(value)
        except OSError as e:
            raise ValueError(f"{where} = {value!r}: cannot create cache folders there "
                             f"({e.strerror or e}); give 'memory', 'none' or a folder "
                             "you can write.") from e
    return value


def check_cache_outside(value, run_dir, evaluated=False):
    """A `ValueError` if the `cache` setting `value` is the folder `run_dir`
    or a folder inside it. Training replaces its run folder and refuses one
    holding files that no run writes: a run (or an evaluation) killed before
    it removed its cache files left `mmtl_tf-cache-…` in it, and the next
    `train --out` the same folder stopped with "holds mmtl_tf-cache-…, which
    no run folder writes"."""
    if not isinstance(value, str) or value in CACHE_CHOICES:
        return
    cache, run = os.path.realpath(value), os.path.realpath(run_dir)
    if cache != run and not cache.startswith(run.rstrip(os.sep) + os.sep):
        return
    where = "is the run folder" if cache == run else "is inside the run folder"
    if evaluated:
        raise ValueError(
            f"cache folder {value} {where} {run_dir} being evaluated, where an evaluation "
            "that is killed leaves cache files that `train --out` that folder refuses; give "
            "--cache memory, none or a folder outside the run folder.")
    raise ValueError(
        f"--cache {value} {where} {run_dir}, which training replaces and where a run that is "
        "killed leaves cache files that block the next run; choose a cache folder outside "
        "the run folder (--cache or the recipe's \"cache\").")


def absolute_cache(value):
    """A `cache` setting as run.json keeps it: a folder made absolute (relative
    to the current folder, as `--cache` and a recipe's `data` are), so that
    `mmtl-tf evaluate` from another folder uses the same one."""
    if isinstance(value, str) and value not in CACHE_CHOICES and value.strip():
        return os.path.abspath(value)
    return value


class _CacheScope:
    def __init__(self, override):
        self.override, self.folder, self.count = override, None, 0
        self.lock = None  # `folder`'s lock file, open and flock'ed while the call runs
        self.made = None  # (DIR, the topmost folder of it that this call created)

    def release(self):
        """Removes the folder of cache files, then lets go of its lock."""
        folder, lock, self.folder, self.lock = self.folder, self.lock, None, None
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            os.close(lock)

    def close(self):
        """`release`, then removes DIR if this call created it and it is empty
        (with the folders above it that the call created, while empty)."""
        self.release()
        made, self.made = self.made, None
        if made:  # not if another run's folder (or anything) is in it
            remove_empty_folders(*made)


@contextlib.contextmanager
def cache_scope(override=None):
    """Within the block, `dataset_cache` names this call's cache files, and
    `override` (a `cache` setting, e.g. `mmtl-tf evaluate --cache`) replaces
    the config's. The per-call folder of cache files is removed at the end."""
    if override is not None:
        check_cache(override)
    scope = _CacheScope(override)
    token = _CACHE_SCOPE.set(scope)
    try:
        yield scope
    finally:
        _CACHE_SCOPE.reset(token)
        scope.close()


def _host():
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


def _new_cache_folder(root):
    """Creates this call's folder of cache files in `root`:
    (`root/mmtl_tf-cache-HOST-PID-RANDOM`, the descriptor of its lock file
    `LOCK_FILE`, locked: `mmtl_tf.files._new_locked_folder`). The folder is
    made under a name that `_remove_dead_folders` passes over and renamed
    once the lock is held, so no run ever sees it named without its lock
    held; the call holds the lock until the folder is removed, and its
    process ending, however it ends, frees it."""
    tmp, lock = _new_locked_folder(root, ".mmtl_tf-cache-new-")
    try:
        folder = os.path.join(
            root, f"{CACHE_PREFIX}{_host()}-{os.getpid()}-{secrets.token_hex(4)}")
        os.rename(tmp, folder)
    except BaseException:
        os.close(lock)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, lock


def _remove_dead_folders(root):
    """Removes `root/mmtl_tf-cache-HOST-*` folders of this host (by name) that
    a killed run left: their tf.data lock files and partial cache files would
    otherwise stay forever.

    A folder is dead when its lock file (`LOCK_FILE`) can be locked without
    waiting: the run that made it holds the lock for as long as it runs, in
    whatever PID namespace (two containers sharing the host name and DIR).
    It is removed while the lock is held, then the lock is let go. A folder
    whose lock cannot be taken for another reason (no flock on that file
    system, no permission) is left alone. A folder without a lock file was
    made by an mmtl_tf that wrote none (or its lock file was deleted): it is
    removed when no process of this PID namespace has the PID in its name,
    the rule of those versions (which cannot tell a run in another PID
    namespace). Folders named after other hosts are left alone: the lock of
    a run on another machine may not be seen here (flock over NFS works only
    where the mount passes locks to the server, not with `nolock`)."""
    mine = f"{CACHE_PREFIX}{_host()}-"
    remove_dead_folders(root, lambda name: name.startswith(mine),
                        without_lock=lambda name: _pid_gone(name[len(mine):].split("-", 1)[0]))


def _pid_gone(pid):
    """Whether no process of this PID namespace has the PID `pid` (a string)."""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: still running
        pass
    return False


def _cache_setting(config):
    """(the `cache` setting this train/evaluate call uses: `mmtl-tf evaluate
    --cache`'s (`cache_scope`), else `config`'s, default "memory"; whether it
    is the former)."""
    scope = _CACHE_SCOPE.get()
    if scope is not None and scope.override is not None:
        return scope.override, True
    return config.get("cache", "memory"), False


def dataset_cache(config, name):
    """The `cache` argument of the dataset builders for one dataset (`name`,
    e.g. the split) of a task run with `config`: True for "memory" (the
    default), False for "none", else a file prefix for tf.data's file cache
    in a folder of this train/evaluate call inside the setting's folder
    (`DIR/mmtl_tf-cache-HOST-PID-RANDOM/NAME-N`), distinct for every dataset
    built, removed when the call ends."""
    scope = _CACHE_SCOPE.get()
    value = check_cache(_cache_setting(config)[0])
    if value == "memory":
        return True
    if value == "none":
        return False
    if scope is None:  # called outside a task's train/evaluate: removed at exit
        scope = _CacheScope(None)
        atexit.register(scope.close)
    value = os.path.abspath(value)
    if scope.folder is None or not os.path.isdir(scope.folder):
        scope.release()  # a folder removed meanwhile: its lock
        try:
            for attempt in range(3):
                top = missing_top(value)
                os.makedirs(value, exist_ok=True)
                if top and scope.made is None:
                    scope.made = (value, top)
                _remove_dead_folders(value)
                try:
                    scope.folder, scope.lock = _new_cache_folder(value)
                    break
                except FileNotFoundError:  # DIR removed meanwhile by the run that created it
                    if attempt == 2:
                        raise
        except OSError as e:  # e.g. the run's cache folder, read-only now (evaluate)
            raise type(e)(f"cache folder {value}: cannot create this call's folder of cache "
                          f"files there ({e.strerror or e}); give --cache memory, none or "
                          "a folder you can write") from e
    scope.count += 1
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))
    return os.path.join(scope.folder, f"{safe}-{scope.count}")


# Settings (or settings ending in "_" + name) with a range to keep.
_RANGES = (("dropout", lambda v: 0 <= v < 1, "at least 0 and below 1"),
           ("vocab_size", lambda v: v >= 3, "at least 3 (padding, the unknown word and one "
                                            "word)"),
           # A recipe's learning rate of -0.01 trained (gradient ascent:
           # validation loss 96.6) where --learning-rate -0.1 was refused.
           ("learning_rate", lambda v: 0 < v < float("inf"), "positive and finite"),
           ("batch_size", lambda v: v >= 1, "at least 1"),
           ("seed", lambda v: 0 <= v < 2 ** 32, "from 0 to 2**32 - 1"))
# The kinds of the command line's settings, which the bundled recipes do not
# all list (so a recipe file's value had nothing to be compared with:
# "deterministic": "false" turned determinism on).
_RUNTIME_KINDS = {"epochs": 1, "batch_size": 1, "learning_rate": 1.0, "seed": 0,
                  "deterministic": False}


def resolve_config(recipe, size="base", overrides=None, base=None, settings=None,
                   set_by_file=None):
    """Recipe section + non-None overrides → one config dict.

    With `base` (the task's bundled recipe) and a recipe that is a JSON file
    of your own, the file's settings override those of `base`'s same size:
    the file needs only the settings it changes. With `settings` (the names
    the task reads, `mmtl_tf.tasks.settings`) any other name in the file is a
    `ValueError` (a misspelt `"epoch": 5` was ignored); names starting with
    `_` are comments. An empty (or blank) string setting is a `ValueError`,
    as an empty value of a command-line option is a usage error.

    `set_by_file`, a set, receives the names of the settings that such a
    file of your own sets (nothing for a bundled recipe): a setting that
    follows another unless given (`mmtl-tf train head-swap`'s
    `localization_learning_rate`) is told apart from the bundled default.
    """
    from mmtl_tf.recipes import available
    from mmtl_tf.tasks import task_recipes

    own = task_recipes(base) if base else []
    if base and recipe in available() and recipe not in own:
        # Another task's bundled recipe ended in a traceback (KeyError:
        # 'batch_size') once the task read a setting it lacks.
        raise ValueError(f"--recipe {recipe}: a recipe of another task; this task's bundled "
                         f"recipes: {', '.join(own)} (or a JSON file of your own).")
    config = load_recipe(recipe, size)
    for key, value in config.items():
        if isinstance(value, str) and not value.strip() and not key.startswith("_"):
            # As `--weights ''` is a usage error: "weights": "" trained from a
            # random initialisation, "image_weights": "" looked for a file ''.
            hint = " (null for no weights)" if key.endswith("weights") else ""
            raise ValueError(f"recipe {recipe}: {size}.{key} = {json.dumps(value)} is empty; "
                             f"give a value{hint} or leave {key} out.")
    if base and recipe.endswith(".json") and recipe != base:
        defaults = load_recipe(base, size)
        for key in config:
            if settings is not None and key not in settings and not key.startswith("_"):
                close = difflib.get_close_matches(key, sorted(settings), n=1, cutoff=0.7)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"recipe {recipe}: {size}.{key} is not a setting of this task ({hint}"
                    f"the task's bundled recipe {base!r} lists its settings: "
                    f"mmtl_tf/recipes/{base}.json).")
        for key, value in config.items():
            example = defaults.get(key, _RUNTIME_KINDS.get(key))
            if isinstance(value, list) and _one_number(key):
                # (A list may stand for a size's number, not for these: a
                # learning rate of [-0.01] passed every check.)
                raise ValueError(f"recipe {recipe}: {size}.{key} = {json.dumps(value)} should "
                                 f"be {_kind(example) if example is not None else 'a number'}, "
                                 "not a list.")
            if example is not None and not _same_kind(example, value):
                like = (f" like {base}'s {json.dumps(example)}" if key in defaults else "")
                raise ValueError(
                    f"recipe {recipe}: {size}.{key} = {json.dumps(value)} should be "
                    f"{_kind(example)}{like}.")
        if set_by_file is not None:
            set_by_file.update(k for k in config if not k.startswith("_"))
        config = {**defaults, **config}
    for key, value in (overrides or {}).items():
        if value is not None:
            config[key] = value
    if "cache" in config:
        where = "cache" if (overrides or {}).get("cache") is not None else \
            f"recipe {recipe}: {size}.cache"
        value = check_cache(config["cache"], where)
        parent = None if value in CACHE_CHOICES else missing_parent(value)
        if parent:  # as `--cache`: its parents were created, a mistyped one too
            raise ValueError(f"{where} = {value!r}: is neither 'memory' nor 'none' nor a folder "
                             f"or a new folder in an existing one ({parent} does not exist).")
        config["cache"] = check_cache_folder(absolute_cache(value), where)
    epochs = config.get("epochs")
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs < 1:
        # It failed after setting up, with "No such file ... best.keras".
        raise ValueError(f"recipe {recipe}: {size}.epochs = {epochs}; train at least 1 epoch.")
    # As the command line's --dropout and --vocab-size check them: they
    # failed once the model was built, with Keras' "Invalid value received
    # for argument rate", or after TensorFlow loaded, naming no setting.
    # (Also the tasks' "fusion_dropout", "lstm_vocab_size", ...)
    for key, value in config.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        for name, accept, requirement in _RANGES:
            if (key == name or key.endswith("_" + name)) and not accept(value):
                where = f"--{key.replace('_', '-')}" if (overrides or {}).get(key) is not None \
                    else f"recipe {recipe}: {size}.{key}"
                raise ValueError(f"{where} = {value}: must be {requirement}.")
    return config


def _one_number(key):
    """Whether setting `key` is one number, never a list (the runtime
    settings, epochs and the settings with a range)."""
    return key in _RUNTIME_KINDS or any(key == name or key.endswith("_" + name)
                                        for name, _, _ in _RANGES)


def _kind(value):
    if isinstance(value, list) and value:
        items = {_kind(v) for v in value if v is not None}
        plural = {"a whole number": "whole numbers", "a number": "numbers",
                  "a string": "strings", "true or false": "true or false values"}
        if len(items) == 1 and next(iter(items)) in plural:
            return f"a list of {plural[items.pop()]}"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            list: "a list", dict: "a JSON object"}.get(type(value), type(value).__name__)


def _same_kind(default, value):
    """Whether a recipe file's `value` can stand where the bundled recipe has
    `default`: a whole number for a number, a list of such numbers for a
    number (sizes such as `conv_filters` may be given per block; not for
    `_one_number` settings, which `resolve_config` refuses first), for a
    list a list whose items are of its items' kind (`[[32]]` or `["a", "b"]`
    for `image_size` failed in the task with a traceback or an `int()`
    message naming no setting, and `[32.7, 32]` was cut to 32), anything for
    a null; a null only for a null, a string or a true/false (`"weights":
    null` is no weights; `"seed": null` or `"epochs": null` ended in a
    traceback, `int() argument must be ... not 'NoneType'`)."""
    if default is None:
        return True
    if value is None:
        return isinstance(default, (str, bool))
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)) and isinstance(value, list):
        return all(not isinstance(v, list) and _same_kind(default, v) for v in value)
    if isinstance(default, list) and isinstance(value, list):
        items = [d for d in default if d is not None]
        nested = any(isinstance(d, list) for d in items)
        return not items or all(any(_same_kind(d, v) for d in items)
                                and (nested or not isinstance(v, list)) for v in value)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def check_one_batch(config, count, rows=None, items="pairs", files="image"):
    """A `DataError` when the training split has fewer `items` than one batch
    (training batches drop the remainder, so nothing would be trained).
    `rows`: the number of rows before bad `files` files were skipped
    (`on_error="skip"`), if known."""
    if count >= int(config["batch_size"]):
        return
    skipped = f" ({rows - count} bad {files} file(s) skipped)" if rows and rows > count else ""
    raise DataError(f"{config['data']}: the training split has {count} {items}{skipped}, "
                    f"fewer than one batch (batch_size={config['batch_size']}); "
                    "add rows or lower the batch size (--batch-size).")


def check_run_dir(run_dir, option="another --out (run folder)"):
    """Raises a `ValueError` if training must not write `run_dir`, whose
    contents training replaces: a file; a non-empty folder that is not a run
    folder (no run.json, or one that is not an mmtl_tf run record); a run
    folder holding anything a run does not write (`RUN_ENTRIES`, and
    SavedModels exported into it, such as the quickstart's `saved_model/` or
    TensorFlow Serving's `serving/1`):
    notes or folders of your own would be deleted; the current folder or one
    above it; a folder this process may not change, or a new one in a folder
    where it may not create one. `option`: what the error says to choose
    instead."""
    check_replaceable(run_dir, RUN_FILE, "run folder", own=RUN_ENTRIES, nested=_exported,
                      check_marker=_not_a_run_record, option=option)


def _exported(path):
    """Whether `path`, in a run folder, holds only exports of the run: a
    SavedModel, or a folder of SavedModels (TensorFlow Serving's numbered
    versions, e.g. `serving/1`)."""
    if is_saved_model(path):
        return True
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    names = entries(path)
    return bool(names) and all(is_saved_model(os.path.join(path, n)) for n in names)


def _not_a_run_record(path):
    """Why the file `path` is not a run.json that `start_run` wrote, or None."""
    try:
        info = read_json(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{RUN_FILE} is not valid JSON: {e}"
    if not (isinstance(info, dict) and isinstance(info.get("task"), str)
            and isinstance(info.get("config"), dict)
            and isinstance(info.get("mmtl_tf_version"), str)):
        return f"{RUN_FILE} is no mmtl_tf run record (task, config, mmtl_tf_version)"
    return None


def staged_run(train):
    """Decorator of a task's `train(config, run_dir, verbose)`: it writes into a
    new folder beside `run_dir`, which replaces `run_dir` only when training,
    evaluation and every file are done.

    So a run that fails (bad data, a crash, Ctrl-C) leaves an earlier run in
    `run_dir` as it was, and a finished run never mixes with files of an earlier
    one (stale metrics, an exported SavedModel of another model). `run_dir` must
    be new, empty or a run folder (`check_run_dir`). Under `on_error="raise"`
    the bad files and rows of every split are reported together, before
    training starts (`mmtl_tf.errors.collect_problems`). The runtime settings
    the run applies (`start_run`: precision, `jit_compile`) are put back as
    they were afterwards (`runtime.settings`).
    """
    @functools.wraps(train)
    def staged(config, run_dir, verbose=1):
        check_cache_outside(config.get("cache"), run_dir)
        check_run_dir(run_dir)
        found = _run_record(run_dir)  # what this run will replace, as far as it knows
        result = []
        # runtime.settings(): start_run applies the run's precision and XLA
        # setting; a Python caller's own were left changed after the run (a
        # model built after a mixed_float16 run came out mixed).
        def write(tmp):
            result.append(train(config, tmp, verbose))
            _record_model_architecture(tmp)

        with collect_problems(), cache_scope(), runtime.settings():
            atomic_directory(run_dir, write,
                             keep_replaced=lambda old: _keep_added(run_dir, old, found))
        return result[0]

    return staged


def _run_record(run_dir):
    """The run.json of `run_dir` as a dict, or None (no run folder there, or
    no readable run record)."""
    try:
        info = read_json(os.path.join(run_dir, RUN_FILE))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _keep_added(run_dir, old, found):
    """Called by `atomic_directory` once the new run is in place, with `old`,
    the replaced content of `run_dir`, before it is removed.

    `check_run_dir` refuses, at the start, a run folder holding what no run
    writes; files put there while the training ran (notes, a plot of your
    own) were deleted by the swap all the same. Now they are kept, in a
    folder beside the new run that holds only them (`atomic_directory`
    removes the old run's own files from it; a file, or a folder that cannot
    be listed, is kept whole), and a `KeptFilesWarning` says where. The old
    run is named in a `RunReplacedWarning` if another training finished it
    there meanwhile (`_warn_if_replaced_meanwhile`).
    """
    now = _run_record(old)
    added = keep_added(run_dir, old, RUN_ENTRIES, _exported, "run", "this training finished",
                       "run")
    if added is None:
        _warn_if_replaced_meanwhile(run_dir, now, found)
        return None
    keep, announce_kept = added

    def announce(kept):
        # Kept whole (a file, an unreadable folder): the old run is in it too.
        _warn_if_replaced_meanwhile(run_dir, now, found, kept=kept if keep is None else None)
        announce_kept(kept)

    return keep, announce


def _warn_if_replaced_meanwhile(run_dir, now, found, kept=None):
    """A `RunReplacedWarning` if `now`, the run record of the run folder
    that was replaced, is another than `found`, the one it held when this
    training started (None: none): another training into the same folder
    finished meanwhile, and before, its complete run was replaced without a
    word (both commands printed "run folder: RUN_DIR" and exited 0). `kept`:
    where the replaced folder is kept (None: removed)."""
    if now is None or now == found:
        return
    started = now.get("started")
    what = " ".join(str(v) for v in (now.get("task"), "run", now.get("run_id")) if v)
    when = f", started {started}" if started else ""
    before = "held another run" if found is not None else "held no run"
    fate = f"that run is kept in {kept}" if kept else "that run's files are gone"
    warnings.warn(RunReplacedWarning(
        f"{run_dir}: replaced the {what}{when}, which another training finished there "
        f"while this one trained (the folder {before} when this one started); {fate}."),
        stacklevel=2)


def absolute_source(data):
    """A data source as run.json keeps it: a path made absolute (so that
    `mmtl-tf evaluate` finds it from any folder); `"default"`, `"tfds:NAME"`
    and paths that do not exist as given."""
    if isinstance(data, str) and data != "default" and not data.startswith("tfds:"):
        path = user_path(data)
        if os.path.exists(path):
            return os.path.abspath(path)
    return data


def _same_source(data, own):
    if data in (None, "default") or own in (None, "default"):
        return data in (None, "default") and own in (None, "default")
    if str(data).startswith("tfds:") or str(own).startswith("tfds:"):
        return data == own
    return os.path.realpath(data) == os.path.realpath(own)


# The run that the evaluation in progress loaded: (its folder's real path, its
# run.json as read then).
_EVALUATING = contextvars.ContextVar("mmtl_tf_evaluating", default=None)


class RunReplacedError(OSError):
    """The run folder being evaluated now holds another run (trained into it
    meanwhile): the figures of the model that was loaded are not written."""


def evaluation(evaluate=None, *, unsplit_rows=True):
    """Decorator of a task's `evaluate(run_dir, split, verbose, data, on_error)`.

    `data` that is the run's own training source counts as none (its
    held-out `split` is evaluated and the figures are the run's own). Other
    data is evaluated on all of its rows that it does not assign to another
    split: rows that name no split go to `split`
    (`mmtl_tf.data.sources.unsplit_rows_in`), not to the 80/10/10 hash split;
    its figures are kept under the source's absolute path.

    With `unsplit_rows=False` (`@evaluation(unsplit_rows=False)`), rows of
    other data that name no split are split 80/10/10 by the hash rule of
    training, with the run's seed: for tasks that need the other data's
    training rows too (the metric-learning tasks' retrieval gallery and
    training-class pool), which putting every row in `split` left empty.

    The run's metrics.json is read first (a damaged one is a `ValueError`
    naming it, before anything is evaluated; a missing one is allowed and
    `write_metrics` creates it with only the figures evaluated). If the run
    folder is replaced while evaluating (`mmtl-tf train ... --out` the same
    folder), `write_metrics` raises `RunReplacedError` instead of writing the
    loaded model's figures into the new run's metrics.json.
    """
    if evaluate is None:
        return functools.partial(evaluation, unsplit_rows=unsplit_rows)

    @functools.wraps(evaluate)
    def wrapped(run_dir, split="test", verbose=1, data=None, on_error=None):
        info = load_run(run_dir)
        _check_evaluation_cache(info, run_dir)
        read_metrics(run_dir)  # a damaged metrics.json is named now, not after evaluating
        # write_metrics checks that run_dir still holds this run (a `train
        # --out run_dir` may replace it meanwhile).
        loaded = _EVALUATING.set((os.path.realpath(run_dir), info))
        try:
            return _evaluate(run_dir, info["config"], split, verbose, data, on_error)
        finally:
            _EVALUATING.reset(loaded)

    def _evaluate(run_dir, config, split, verbose, data, on_error):
        # The seeds of training: pairs and episodes drawn for evaluation come
        # from seeded tf.data ops, which also depend on TensorFlow's global seed
        # (without it, evaluate drew other test pairs than training had).
        keras.utils.set_random_seed(int(config.get("seed", 0)))
        if data is not None:
            data = absolute_source(os.fspath(data))
            if _same_source(data, config.get("data")):
                data = None
        own = config.get("data")
        if data is None and isinstance(own, str) and os.path.isabs(own) and \
                not os.path.exists(own):
            # (run.json keeps the path absolute if it existed when training.)
            # It said "no such folder or captions file", not that this is the
            # run's own data, nor what to do.
            raise DataError(
                f"{own}: the run's data (recorded in {os.path.join(run_dir, RUN_FILE)}) is "
                "not there any more (moved or deleted?); give its new place as data= (its "
                "figures are then kept under other_data), or put it back.")
        if data is None or not unsplit_rows:
            return evaluate(run_dir, split=split, verbose=verbose, data=data, on_error=on_error)
        with unsplit_rows_in(split):
            return evaluate(run_dir, split=split, verbose=verbose, data=data, on_error=on_error)

    return wrapped


def _check_evaluation_cache(info, run_dir):
    """The checks of `train --cache` for the setting that evaluating the run
    `info` (its run.json) in `run_dir` uses: `mmtl-tf evaluate --cache`
    (`cache_scope`), else the run's own (which may have been written by a
    version without these checks, or may be read-only now)."""
    from mmtl_tf.tasks import TASKS

    spec = TASKS.get(info.get("task"))
    if spec is not None and not spec.decodes_files:
        return
    value, overridden = _cache_setting(info["config"])
    check_cache_outside(value, run_dir, evaluated=True)  # first: no probe folder in run_dir
    check_cache_folder(value, "evaluate --cache" if overridden
                       else f"{RUN_FILE}'s cache (evaluate --cache gives another)")


def start_run(run_dir, task, config):
    """Creates the run folder, applies seeds and runtime settings, writes run.json
    (with the data source's absolute path, and in `jit_compile_used` whether
    the models compile with XLA: not under `deterministic`, whatever
    `jit_compile` says)."""
    os.makedirs(run_dir, exist_ok=True)
    runtime.configure(precision=config.get("precision", "float32"),
                      jit_compile=config.get("jit_compile", "auto"))
    if config.get("deterministic"):
        runtime.enable_determinism()
    keras.utils.set_random_seed(int(config.get("seed", 0)))
    config = {**config, "data": absolute_source(config.get("data"))} if "data" in config \
        else config
    if "cache" in config:
        config = {**config, "cache": absolute_cache(config["cache"])}
    info = {"task": task, "config": config,
            # Whether the run's models compile with XLA: config's jit_compile is
            # the setting asked for ("auto" included), and under op
            # determinism Keras compiles without XLA whatever it says.
            "jit_compile_used": bool(runtime.get_jit_compile()) and not runtime.is_deterministic(),
            "mmtl_tf_version": __version__,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            # Tells this run from another of the same task and config started in
            # the same second (see `write_metrics`).
            "run_id": secrets.token_hex(8)}
    atomic_write_json(info, os.path.join(run_dir, RUN_FILE))
    return info


def update_run(run_dir, **fields):
    info = load_run(run_dir)
    info.update(fields)
    atomic_write_json(info, os.path.join(run_dir, RUN_FILE))
    return info


def load_run(run_dir, task=None):
    """Reads run.json; a clear error if the folder is not a finished run."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{run_dir}: not a run folder (no {RUN_FILE}); create one with "
            "`mmtl-tf train TASK --out RUN_DIR`.")
    try:
        info = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid run file ({e}); train the run again.") from e
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise ValueError(f"{path}: not a valid run file (no task and config); train the "
                         "run again.")
    if task is not None and info.get("task") != task:
        raise ValueError(f"{run_dir}: holds a {info.get('task')!r} run, not {task!r}.")
    info = RunFields(path, info)
    info["config"] = RunFields(path, info["config"])
    return info


class RunFields(dict):
    """A dict read from run.json: a missing field (`info["class_names"]`,
    `config["image_size"]`) is a `ValueError` naming the file, not a bare
    `KeyError` from deep inside a task."""

    def __init__(self, path, fields):
        super().__init__(fields)
        self.path = path

    def __missing__(self, key):
        raise ValueError(f"{self.path}: no {key!r} (the run file is damaged or incomplete); "
                         "train the run again.")


def require_file(run_dir, name):
    path = os.path.join(run_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir}: missing {name} (did training finish?).")
    return path


# run.json's record of the architecture of the run's model.keras: the SHA-256
# of the archive's config.json (the model's full Keras config, no weights).
MODEL_ARCHITECTURE = "model_config_sha256"


def _architecture_digest(path):
    """(the SHA-256 of a .keras archive's config.json, its bytes), or (None,
    None) where it cannot be read."""
    raw = keras_archive_config(path)
    return (None, None) if raw is None else (hashlib.sha256(raw).hexdigest(), raw)


def _record_model_architecture(run_dir):
    """Writes the architecture digest of `run_dir`'s model.keras into run.json
    (`load_run_model` compares it), where training wrote a model.keras."""
    digest, _ = _architecture_digest(os.path.join(run_dir, "model.keras"))
    if digest is not None and os.path.isfile(os.path.join(run_dir, RUN_FILE)):
        update_run(run_dir, **{MODEL_ARCHITECTURE: digest})


def _check_model_architecture(info, path):
    """A `ValueError` when the model.keras at `path` is not the architecture
    its run recorded: a model.keras copied from another run (of another task,
    or of the same task with other settings) failed inside Keras or the
    export ("'Functional' object has no attribute 'modalities'", a
    `TypeError` traceback), or was evaluated with another run's vocabulary.
    Runs written before the record (2026-11-29) are not checked here."""
    recorded = info.get(MODEL_ARCHITECTURE)
    if not isinstance(recorded, str):
        return
    digest, raw = _architecture_digest(path)
    if digest is None or digest == recorded:
        return  # an unreadable archive is named when it is loaded
    # (Not named `config`: a test reads every key read from a `config` here as
    # a setting of the tasks.)
    try:
        saved = json.loads(raw)
    except ValueError:
        saved = None
    found = ""
    if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
        found = f" ({saved['config'].get('name')!r}, a {saved.get('class_name')})"
    raise ValueError(
        f"{path}: holds a model{found} whose architecture is not the one this run trained "
        f"({RUN_FILE} records another): the file comes from another run; train the run "
        "again or put its own model.keras back.")


def load_run_model(run_dir, task):
    """(run.json contents, the saved Keras model) of a finished run of `task`.

    Loaded without its training state (`compile=False`): evaluation compiles
    again where it needs a loss, and restoring the optimizer of a checkpoint
    saved before the last recompile only warned that its variables differ.
    """
    import mmtl_tf.models  # noqa: F401 (registers the classes the file names)

    info = load_run(run_dir, task)
    path = require_file(run_dir, "model.keras")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: damaged (not a .keras zip archive); train the run again.")
    _check_model_architecture(info, path)
    try:
        # Under the run's precision: mmtl_tf's encoders rebuild their layers
        # under the global policy, so a mixed-precision run loaded as float32.
        with global_dtype_policy(info["config"].get("precision", "float32")):
            model = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot load the model ({e}); it may be damaged: "
                         "train the run again.") from e
    return info, model


def check_run_parts(run_dir, model, inputs, vectorizer=None, class_names=None):
    """A `ValueError` naming the file of a run folder that does not belong
    with the others (copied from another run, or edited): `model.keras`
    whose inputs are not `inputs`; `text_vectorizer.json` whose sequence
    length is not the model's text input's; `run.json`'s `class_names` that
    repeat a name or whose count is not the model's outputs'. Before, these
    failed later with Keras' messages ("Missing data for input 'audio'",
    "expected shape=(None, 8), found shape=(None, 24)"), or exported a
    served `class_name` that could not be told apart."""
    given = model.input
    names = sorted(given) if isinstance(given, dict) else sorted(
        t.name for t in keras.tree.flatten(given))
    model_path, run_file = os.path.join(run_dir, "model.keras"), os.path.join(run_dir, RUN_FILE)
    if names != sorted(inputs):
        raise ValueError(f"{model_path}: a model with inputs {', '.join(names)}, where this "
                         f"run's task takes {', '.join(sorted(inputs))}: the file comes from "
                         "another run; train the run again or put its own model.keras back.")
    text = given.get("text") if isinstance(given, dict) else None
    # (A BERT-family tower takes a dict of token ids and mask: not checked here.)
    if vectorizer is not None and hasattr(text, "shape"):
        expected = getattr(vectorizer, "_output_sequence_length", None)
        length = text.shape[-1]
        if expected is not None and length is not None and int(expected) != int(length):
            raise ValueError(
                f"{os.path.join(run_dir, 'text_vectorizer.json')}: makes {expected} tokens per "
                f"text, where {model_path} takes {length}: the two files come from different "
                "runs; train the run again or put its own files back.")
    if class_names is not None:
        repeated = sorted({name for name in class_names if class_names.count(name) > 1})
        if repeated:
            raise ValueError(f"{run_file}: class_names names {', '.join(map(repr, repeated))} "
                             "more than once (the model's answers could not be told apart); "
                             "train the run again.")
        units = model.outputs[0].shape[-1] if len(model.outputs) == 1 else None
        if units is not None and len(class_names) != units and not (
                units == 1 and len(class_names) == 2):
            raise ValueError(f"{run_file}: {len(class_names)} class_names for a model with "
                             f"{units} outputs ({model_path}): the files come from different "
                             "runs; train the run again.")


def run_config(info, data=None, on_error=None):
    """The run's config, with `data` (a source given at evaluation) in place of
    the training data source and `on_error` (`"raise"` / `"skip"`, given at
    evaluation) in place of the run's."""
    config = info["config"]
    config = RunFields(config.path, config) if isinstance(config, RunFields) else dict(config)
    if data:
        config["data"] = data
    if on_error is not None:
        check_on_error(on_error)
        config["on_error"] = on_error
    return config


def write_metrics(run_dir, metrics, data=None):
    """Merges `metrics` into the run's metrics.json and returns the result.

    With `data` (an evaluation on another source than the run's), they are
    stored under `"other_data"` → `data` instead, so the run's own figures
    stay as training wrote them; the returned dict is the run's metrics with
    these on top, for printing.

    Baselines stay beside the figures of their split: the top-level
    `"baselines"` are the test split's (training writes them with the test
    figures); an evaluation of the test split updates them key by key (a
    baseline it does not compute again is kept), and the baselines of an
    evaluation of another split go into that split's figures
    (`metrics[split]["baselines"]`, read with `split_baselines`). Replacing
    the top-level key put validation baselines beside the test figures and
    dropped the baselines only training computes.
    """
    raise_collected_problems()  # figures of data with bad items are not written
    # The check that run_dir still holds the run loaded, the read and the
    # write are one step with respect to `train --out run_dir` replacing it
    # (`swap_lock`): checked first and then written by path, a swap in
    # between got the old model's figures merged into the new run's
    # metrics.json. It also keeps two evaluations of one run from losing
    # each other's figures.
    # By the path given and its real path: a swap of either (`train --out` a
    # link, or its target) waits.
    with swap_lock(run_dir, os.path.realpath(run_dir)):
        return _merge_metrics(run_dir, metrics, data)


def _merge_metrics(run_dir, metrics, data):
    path = os.path.join(run_dir, METRICS_FILE)
    _check_still_loaded(run_dir, metrics)
    old = read_metrics(run_dir)
    metrics = _baselines_beside_their_split(metrics)
    if data:
        # Merged split by split, as the run's own figures are: evaluating
        # OTHER's validation split left its test figures out.
        earlier = old.get("other_data", {}).get(str(data))
        merged = _merged_figures(earlier, metrics) if isinstance(earlier, dict) else metrics
        stored = {**old, "other_data": {**old.get("other_data", {}), str(data): merged}}
        _write_figures(stored, path, metrics)
        return {**old, **metrics}
    merged = _merged_figures(old, metrics)
    _write_figures(merged, path, metrics)
    return merged


def _merged_figures(old, new):
    """`old` figures updated with `new`, split by split, and their baselines
    key by key."""
    merged = {**old, **new}
    if isinstance(new.get("baselines"), dict) and isinstance(old.get("baselines"), dict):
        merged["baselines"] = {**old["baselines"], **new["baselines"]}
    return merged


def _figures(metrics):
    return json.dumps(metrics, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))


def _write_figures(stored, path, metrics):
    """Writes `stored` to `path`; an `OSError` (no permission, a full disk)
    carries the new `metrics`, which would be lost otherwise."""
    try:
        atomic_write_json(stored, path)
    except OSError as e:
        message = f"{e.strerror or e}; the figures, not written: {_figures(metrics)}"
        raise (type(e)(e.errno, message) if e.errno is not None else type(e)(message)) from e


def _check_still_loaded(run_dir, metrics):
    """A `RunReplacedError` if `run_dir` is being evaluated (`evaluation`) and
    no longer holds the run that was loaded."""
    loaded = _EVALUATING.get()
    if loaded is None or loaded[0] != os.path.realpath(run_dir):
        return
    if _run_record(run_dir) != loaded[1]:
        raise RunReplacedError(
            f"{run_dir} was replaced while evaluating (its {RUN_FILE} is not the one "
            "loaded: another run was trained into it); the figures of the model that was "
            f"evaluated were not written: {_figures(metrics)}")


def read_metrics(run_dir):
    """The run's metrics.json as a dict, `{}` if there is none; a `ValueError`
    naming the file if it is not a JSON object (damaged, e.g. cut short)."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.lexists(path):
        return {}
    what = ("move it away (evaluating then writes a new one that holds only the figures "
            "evaluated) or train the run again.")
    try:
        metrics = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: damaged, not valid JSON ({e}); {what}") from e
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: holds a JSON {type(metrics).__name__}, not the run's "
                         f"figures (a JSON object); {what}")
    if not isinstance(metrics.get("other_data", {}), dict):
        raise ValueError(f"{path}: its \"other_data\" is not a JSON object; {what}")
    return metrics


def _baselines_beside_their_split(metrics):
    """`metrics` with top-level `"baselines"` moved into the figures of the
    one split they come with, unless that split is `"test"`."""
    splits = [k for k in metrics if k in SPLITS]
    if "baselines" not in metrics or len(splits) != 1 or splits[0] == "test":
        return metrics
    split = splits[0]
    metrics = dict(metrics)
    metrics[split] = {**metrics[split], "baselines": metrics.pop("baselines")}
    return metrics


def row_figures(results, rows):
    """A split's figures: Keras' `evaluate` results as floats, with the
    number of `rows` scored."""
    return {**{k: float(v) for k, v in results.items()}, "rows": int(rows)}


def scored_rows(split, results, records):
    """Figures of a classifier's evaluation of `split` for `write_metrics`:
    `results` (floats) with the number of `rows` scored, and the baseline
    `most_common_class_accuracy`, the share of those rows in their most
    common class (what always answering it scores; no constant answer scores
    more). An evaluation printed only "accuracy=0.7800": on the first 50
    test rows of the bundled sample, 39 of them flags, that is what
    answering "Flags" every time scores."""
    import numpy as np

    figures = {split: row_figures(results, len(records))}
    ids = records.label_ids()
    if len(ids):
        share = float(np.bincount(ids).max() / len(ids))
        figures["baselines"] = {"most_common_class_accuracy": share}
    return figures


def split_baselines(metrics, split):
    """The baselines of `split` in a metrics dict (see `write_metrics`): those
    in the split's figures, else, for the test split, the top-level ones."""
    own = metrics.get(split, {}).get("baselines")
    if isinstance(own, dict):
        return own
    return metrics.get("baselines", {}) if split == "test" else {}
