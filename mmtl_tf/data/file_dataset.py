"""`checked_file_dataset`: load files in parallel into a cached dataset, and name
the files that fail (shared by the image and the audio pipelines)."""

import os
import threading

import numpy as np
import tensorflow as tf

from mmtl_tf.errors import DataError, current_split, handle_problems

# Rows named in one message about a file that several rows use (the rest are counted).
_ROWS_NAMED = 10
# Bytes per batch of the checking pass when it copies the loaded files out.
_CHECK_BATCH_BYTES = 64 * 2**20


def checked_file_dataset(paths, load, describe_failure, what, cache=True, validate=True,
                         on_error="raise", locations=None, quick_load=None, cache_key=""):
    """`(index, load(path))` for every file, loaded in parallel and cached.

    The first full pass (run here when `validate`) loads every file with
    `num_parallel_calls=AUTOTUNE`, fills the cache, and finds the files whose
    loading fails: they raise one `mmtl_tf.DataError` that names each file and
    its problem, or, with `on_error="skip"`, are dropped with a `DataWarning`
    that lists them (a `DataError` if none is left).

    A file named more than once in `paths` (an image with several captions)
    is loaded and kept in memory once when `validate` and `cache=True`, its
    loaded tensors all have one shape and the dataset is built outside a
    `tf.distribute` strategy's scope: the rows read their file's tensor from
    one store (in `paths`' order, as otherwise). A bad file is reported once,
    with every row that uses it, and all those rows are dropped together.

    Args:
        paths: list of str. The files (one per row; a file may repeat).
        load: callable. tf string scalar (a path) → tensor; runs in `Dataset.map`
            (without AutoGraph).
        describe_failure: callable. path str → str, why loading that file
            fails (run eagerly, only for the failed files).
        what: str. What the files are, for the messages (e.g. "image files").
        cache: bool or str. True: in memory; a str: files with that prefix
            and a key of what they hold (`cache_file`), so that a dataset of
            other files, changed files or other settings never reads them;
            False: load again every epoch.
        validate: bool. Run the checking pass now. Without it, a file that
            fails to load later raises TensorFlow's error while iterating
            (`on_error="raise"`) or is dropped silently (`"skip"`).
        on_error: str. `"raise"` or `"skip"`.
        locations: list of str or None. Names for the messages (e.g. the
            captions-file row of each file); defaults to the paths.
        quick_load: callable or None. A cheaper `load` (a smaller graph) for
            the files it can take, that fails for the others and gives the
            same tensors as `load` for the ones it takes. Used with
            `validate` and `cache=True`, unless the rows share files and go
            to the store above: the checking pass runs it, and a second
            pass loads the files it failed with `load` (where the bad ones
            fail again); the rows then come from both caches, in row order.
            When it takes every good file, `load` is not in the dataset's
            graph, so no iterator of the dataset (each epoch makes one)
            instantiates it. When it takes few, the others are read twice
            and each epoch reads two caches: slower than without it.
        cache_key: str. The settings of `load` (image size, sample rate,
            ...), for the key of a file cache.

    Returns:
        (dataset of (index int32, loaded tensor), list of the kept indices
        into `paths`). The index is the row's position among the kept rows
        (its index in `paths` when none was dropped), so it indexes
        `[paths[k] for k in kept]`. With `validate` the dataset's cardinality
        is the number of kept rows (without a cache each epoch loads the
        files again; one that fails then is an error).

    Example:
        >>> ds, kept = checked_file_dataset(paths, load, why, "image files")  # doctest: +SKIP
    """
    n = len(paths)
    if not n:
        raise DataError(f"no {what} to load (the list of files is empty).")
    paths = [str(p) for p in paths]
    if cache and not isinstance(cache, bool):
        cache = cache_file(cache, paths, f"{what}\0{cache_key}")
    # The load functions use tf.cond/switch_case explicitly (or numpy_function):
    # AutoGraph has nothing to convert, and skipping it saves set-up time.
    indexed = tf.autograph.experimental.do_not_convert(lambda i, p: (i, load(p)))
    files, file_of_row = _distinct(paths)
    if len(files) < n and validate and cache is True:
        shared = _shared_files_dataset(paths, files, file_of_row, indexed, describe_failure,
                                       what, on_error, locations)
        if shared is not None:
            return shared
    quick = quick_load is not None and validate and cache is True
    first = tf.autograph.experimental.do_not_convert(
        lambda i, p: (i, quick_load(p))) if quick else indexed
    ds = _loading(np.arange(n), paths, first, validate or on_error == "skip", cache)
    kept = list(range(n))
    if validate:
        seen = _checking_pass(ds, cache)
        if quick and len(seen) != n:
            # The files the quick load did not take (and the bad ones): the
            # full load, in a second pass; the rows then come from both
            # caches in row order.
            rest = [i for i in range(n) if i not in seen]
            full = _loading(np.array(rest), [paths[i] for i in rest], indexed, True, cache)
            seen_full = _checking_pass(full, cache)
            if seen_full:  # (else only bad files were left: the quick dataset alone)
                source = [int(i in seen_full) for i in sorted(seen | seen_full)]
                ds = tf.data.Dataset.choose_from_datasets(
                    [ds, full],
                    tf.data.Dataset.from_tensor_slices(tf.constant(source, tf.int64)))
                seen |= seen_full
        if len(seen) != n:
            kept = sorted(seen)
            failed = [i for i in range(n) if i not in seen]
            handle_problems(_problems(failed, paths, locations, describe_failure),
                            on_error, what, total=len(files), split=current_split())
            # Number the kept files 0..len(kept)-1, so that callers index
            # `records.subset(kept)` and reuse the filled cache (no second
            # decoding pass over the good files).
            position = np.full(n, -1, np.int32)
            position[kept] = np.arange(len(kept), dtype=np.int32)
            position = tf.constant(position)
            ds = ds.map(tf.autograph.experimental.do_not_convert(
                lambda i, value: (tf.gather(position, i), value)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # `ignore_errors` makes the size unknown; after the checking pass the
        # cache holds exactly the kept files (without a cache, a file that
        # fails later, e.g. changed during training, then stops the iteration
        # with an error instead of vanishing). Knowing the size lets Keras
        # show "n/N" in the first epoch instead of warning, at the end of it,
        # that the input "ran out of data".
        if not cache:
            ds = _name_files_failing_later(ds, [paths[k] for k in kept], what)
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(kept)))
    return ds, kept


def _name_files_failing_later(ds, paths, what):
    """`ds`, `(index, loaded file)` in index order 0..len(paths)-1 after its
    `ignore_errors`, failing with an error that names the file when one
    that loaded in the checking pass fails in a later epoch (changed or
    removed since: without a cache each epoch loads the files again).
    Before, the epoch ended with "Input dataset was expected to contain 24
    elements but contained only 23 elements", naming no file. A file left
    out shows as a gap in the indices; a last element, past the last index,
    catches the last file. (Only for datasets without a cache, whose epochs
    decode every file anyway.)"""
    n = len(paths)
    value_spec = ds.element_spec[1]
    if any(spec.shape.rank is None for spec in tf.nest.flatten(value_spec)):
        return ds  # (no last element can be made; the count still fails)
    names = tf.constant(paths)
    last = tf.data.Dataset.from_tensors((tf.constant(n, tf.int32), tf.nest.map_structure(
        lambda spec: tf.zeros([0 if d is None else d for d in spec.shape], spec.dtype),
        value_spec)))
    message = (f"one of the {what} failed to load in a later epoch although it loaded in "
               "the checking pass (changed or removed since? without a cache every epoch "
               "loads the files again):")

    @tf.autograph.experimental.do_not_convert
    def check(count, element):
        count = tf.cast(count, tf.int32)
        failed = tf.debugging.Assert(tf.equal(element[0], count), [
            message, tf.gather(names, tf.minimum(count, n - 1))])
        with tf.control_dependencies([failed]):
            return tf.nest.map_structure(tf.identity, element)

    # A file skipped in the checking pass (index -1) that loads in a later
    # epoch stays skipped; it was counted as the next row and another file
    # was named.
    skipped = tf.autograph.experimental.do_not_convert(lambda i, _: i >= 0)
    return ds.filter(skipped).concatenate(last).enumerate().map(check).filter(
        tf.autograph.experimental.do_not_convert(lambda i, _: i < n))


def cache_file(prefix, paths, settings):
    """The tf.data cache file name for files `paths` loaded with `settings`:
    `prefix` + "-" + a key of the paths in order, each file's size and
    modification time, and `settings`. `Dataset.cache(name)` reads complete
    cache files of that name whatever they were written from, so a prefix
    used again (another split, another image size, files changed since)
    read another dataset's tensors: the wrong images without an error where
    the counts allowed it, else an `IndexError` or "Incompatible shapes".
    The same files and settings find their own cache again (the decoding
    is skipped, as tf.data intends). The key also holds the mmtl_tf and
    TensorFlow versions, whose decoding may differ: a cache written by
    another version is not read (nor removed). A prefix in a folder that
    does not exist is a `ValueError`."""
    import hashlib

    from mmtl_tf import __version__

    prefix = os.path.expanduser(os.fspath(prefix))  # tf.data would make a folder "~"
    # The folder the cache files go in: "dir/" names files "dir/-KEY".
    folder = os.path.dirname(prefix) or "."
    if "://" not in prefix and not os.path.isdir(folder):  # (gs://... is tf.data's to check)
        # It failed at the first read with "NotFoundError: ...lockfile; No
        # such file or directory".
        raise ValueError(f"cache={prefix!r}: the folder {folder} does not exist; "
                         "create it, or give a prefix in an existing folder.")
    versions = f"mmtl_tf {__version__}\0tensorflow {tf.__version__}\0"
    key = hashlib.blake2b((versions + settings).encode("utf-8", "surrogatepass"),
                          digest_size=8)
    for path in paths:
        try:
            st = os.stat(path)
            stamp = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        key.update(f"\0{path}\0{stamp}".encode("utf-8", "surrogatepass"))
    return f"{prefix}-{key.hexdigest()}"


def _loading(rows, paths, indexed, skip_errors, cache):
    """`(row, loaded file)` for `rows` (their indices into the full list)
    and their `paths`, loaded in parallel in row order, then cached."""
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(rows, dtype=tf.int32), tf.constant(paths, dtype=tf.string)))
    ds = ds.map(indexed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if skip_errors:
        # Without the checking pass, a bad file must stop the iteration (with
        # TensorFlow's error) rather than vanish unreported.
        ds = ds.ignore_errors()
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    return ds


def _checking_pass(ds, cache):
    """Iterates `ds` once (loading every file and filling its cache); the
    set of the row indices it yielded (the files that loaded)."""
    seen = set()
    # Iterating only the indices still loads every file and fills the
    # cache upstream, without copying the contents into batches.
    index_only = tf.autograph.experimental.do_not_convert(lambda i, value: i)
    checking = [iter(ds.map(index_only).batch(4096).with_options(_checking_options()))]
    for idx_batch in checking[0]:
        seen.update(idx_batch.numpy().tolist())
    if cache and not isinstance(cache, bool):
        # Cache files: the iterator that wrote them goes on this thread,
        # before the caller may remove their folder (`--cache DIR` after
        # a `DataError`).
        checking.clear()
    else:
        _release_in_background(checking)
    return seen


def _checking_options():
    # One pass over the files, decoding-bound: start at full parallelism
    # instead of letting the autotuner ramp up (on 2 cores it sometimes ran
    # most of the pass on one, nearly doubling its time).
    options = tf.data.Options()
    options.autotune.initial_parallelism = os.cpu_count() or 1
    return options


def _release_in_background(holder):
    """Drops the finished iterator in `holder` (a list holding the only
    reference to it) on a new thread, so that the caller need not wait.

    Deleting a `tf.data` iterator whose pipeline the autotuner watched
    sometimes waits: on a 2-core machine, after a checking pass over 1,621
    JPEGs, the `del` took 0.18–0.32 s of wall time and under 0.01 s of CPU
    in 4 of 15 passes (1 ms otherwise). Without the autotuner it never
    waited, but the pass itself was slower. The thread is not a daemon: at
    exit the interpreter waits for it instead of stopping it inside
    TensorFlow's deletion.
    """
    threading.Thread(target=holder.clear, name="mmtl_tf-release-iterator").start()


def _distinct(paths):
    """(the distinct paths in order of first use, int array: each row's
    position among them)."""
    position = {}
    rows = np.fromiter((position.setdefault(p, len(position)) for p in paths), np.int64,
                       len(paths))
    return list(position), rows


def _problems(failed_rows, paths, locations, describe_failure):
    """One (location, problem) per failed file: the file's rows (or path),
    and why it fails (asked once per file)."""
    rows_of = {}
    for i in failed_rows:
        rows_of.setdefault(paths[i], []).append(i)
    problems = []
    for path, rows in rows_of.items():
        if locations:
            names = [str(locations[i]) for i in rows]
            shown = ", ".join(names[:_ROWS_NAMED])
            if len(names) > _ROWS_NAMED:
                shown += f" and {len(names) - _ROWS_NAMED} more rows"
            where = f"{shown} ({path})"
        else:
            where = path if len(rows) == 1 else f"{path} ({len(rows)} rows)"
        problems.append((where, describe_failure(path)))
    return problems


def _shared_files_dataset(paths, files, file_of_row, indexed, describe_failure, what,
                          on_error, locations):
    """`checked_file_dataset` with `cache=True` for rows that share files:
    each distinct file is loaded once, into one array held by a CPU variable
    that the rows' dataset slices (in row order); None when the loaded
    tensors have no fixed shape or when called within a distribution
    strategy's scope (the caller then loads one per row)."""
    if tf.distribute.has_strategy():
        # A variable made here would be mirrored onto the devices; datasets
        # are normally built outside the scope (the tasks do).
        return None
    m = len(files)
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.range(m, dtype=tf.int32), tf.constant(files, dtype=tf.string)))
    ds = ds.map(indexed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    spec = ds.element_spec[1]
    if not spec.shape.is_fully_defined():
        return None
    ds = ds.ignore_errors()
    shape, dtype = tuple(spec.shape.as_list()), spec.dtype.as_numpy_dtype
    item_bytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    store = _aligned_empty((m, *shape), dtype)
    good = []
    batch = max(1, _CHECK_BATCH_BYTES // item_bytes)
    checking = [iter(ds.batch(batch).with_options(_checking_options()))]
    for idx, values in checking[0]:
        start = len(good)
        good.extend(idx.numpy().tolist())
        store[start:len(good)] = values.numpy()
    _release_in_background(checking)
    position = np.full(m, -1, np.int64)
    position[good] = np.arange(len(good))
    row_position = position[file_of_row]
    kept = np.flatnonzero(row_position >= 0)
    if len(good) != m:
        failed = np.flatnonzero(row_position < 0).tolist()
        handle_problems(_problems(failed, paths, locations, describe_failure),
                        on_error, what, total=m, split=current_split())
    pixels = _cpu_store(store[:len(good)])
    del store
    rows = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(kept), dtype=tf.int32),
         tf.constant(row_position[kept].astype(np.int32))))
    # A slice of the store along its first axis shares its memory (when
    # aligned), so shuffle buffers downstream hold no copies either.
    ds = rows.map(tf.autograph.experimental.do_not_convert(lambda i, k: (i, pixels[k])),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds._mmtl_file_store = pixels  # keeps the variable alive as long as the dataset
    return ds, kept.tolist()


def _aligned_empty(shape, dtype):
    """`np.empty(shape, dtype)` starting on a 64-byte boundary (what TensorFlow
    needs to use the memory without copying it)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    offset = (-raw.ctypes.data) % 64
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def _cpu_store(array):
    """A CPU variable holding `array`, without copying it.

    A variable rather than a captured tensor: tf.data serializes the tensors
    that its functions capture when it rewrites the pipeline (a second copy,
    and a 2 GB limit), not a variable. Only called outside a distribution
    strategy's scope (`_shared_files_dataset` checks), where `tf.Variable`
    is a plain variable, not one mirrored onto every device.
    """
    with tf.init_scope(), tf.device("/cpu:0"):
        tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        return tf.Variable(tensor, trainable=False, name="mmtl_tf_file_store")
