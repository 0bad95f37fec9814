"""`checked_file_dataset`: load files in parallel into a cached dataset, and name
the files that fail (shared by the image and the audio pipelines)."""

import os

import numpy as np
import tensorflow as tf

from mmtl_tf.errors import DataError, handle_problems


def checked_file_dataset(paths, load, describe_failure, what, cache=True, validate=True,
                         on_error="raise", locations=None):
    """`(index, load(path))` for every file, loaded in parallel and cached.

    The first full pass (run here when `validate`) loads every file with
    `num_parallel_calls=AUTOTUNE`, fills the cache, and finds the files whose
    loading fails: they raise one `mmtl_tf.DataError` that names each file and
    its problem, or, with `on_error="skip"`, are dropped with a `DataWarning`
    that lists them (a `DataError` if none is left).

    Args:
        paths: list of str. The files.
        load: callable. tf string scalar (a path) → tensor; runs in `Dataset.map`
            (without AutoGraph).
        describe_failure: callable. path str → str, why loading that file
            fails (run eagerly, only for the failed files).
        what: str. What the files are, for the messages (e.g. "image files").
        cache: bool or str. True: in memory; a str: files with that prefix;
            False: load again every epoch.
        validate: bool. Run the checking pass now. Without it, a file that
            fails to load later raises TensorFlow's error while iterating
            (`on_error="raise"`) or is dropped silently (`"skip"`).
        on_error: str. `"raise"` or `"skip"`.
        locations: list of str or None. Names for the messages (e.g. the
            captions-file row of each file); defaults to the paths.

    Returns:
        (dataset of (index int32, loaded tensor), list of the kept indices
        into `paths`). The index is the file's position among the kept files
        (its index in `paths` when none was dropped), so it indexes
        `[paths[k] for k in kept]`. With `validate` and `cache` the dataset's
        cardinality is the number of kept files.

    Example:
        >>> ds, kept = checked_file_dataset(paths, load, why, "image files")  # doctest: +SKIP
    """
    n = len(paths)
    if not n:
        raise DataError(f"no {what} to load (the list of files is empty).")
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.range(n, dtype=tf.int32), tf.constant(list(paths), dtype=tf.string)))
    # The load functions use tf.cond/switch_case explicitly (or numpy_function):
    # AutoGraph has nothing to convert, and skipping it saves set-up time.
    indexed = tf.autograph.experimental.do_not_convert(lambda i, p: (i, load(p)))
    ds = ds.map(indexed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if validate or on_error == "skip":
        # Without the checking pass, a bad file must stop the iteration (with
        # TensorFlow's error) rather than vanish unreported.
        ds = ds.ignore_errors()
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    kept = list(range(n))
    if validate:
        seen = set()
        # Iterating only the indices still loads every file and fills the
        # cache upstream, without copying the contents into batches.
        index_only = tf.autograph.experimental.do_not_convert(lambda i, value: i)
        # One pass over the files, decoding-bound: start at full parallelism
        # instead of letting the autotuner ramp up (on 2 cores it sometimes
        # ran most of the pass on one, nearly doubling its time).
        options = tf.data.Options()
        options.autotune.initial_parallelism = os.cpu_count() or 1
        for idx_batch in ds.map(index_only).batch(4096).with_options(options):
            seen.update(idx_batch.numpy().tolist())
        if len(seen) != n:
            kept = sorted(seen)
            names = locations or paths
            problems = [
                (f"{names[i]}" + (f" ({paths[i]})" if locations else ""),
                 describe_failure(paths[i]))
                for i in range(n) if i not in seen]
            handle_problems(problems, on_error, what, total=n)
            # Number the kept files 0..len(kept)-1, so that callers index
            # `records.subset(kept)` and reuse the filled cache (no second
            # decoding pass over the good files).
            position = np.full(n, -1, np.int32)
            position[kept] = np.arange(len(kept), dtype=np.int32)
            position = tf.constant(position)
            ds = ds.map(tf.autograph.experimental.do_not_convert(
                lambda i, value: (tf.gather(position, i), value)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if cache:
            # `ignore_errors` makes the size unknown; after the checking pass
            # the cache holds exactly the kept files. Knowing it lets Keras
            # show "n/N" in the first epoch instead of warning, at the end of
            # it, that the input "ran out of data".
            ds = ds.apply(tf.data.experimental.assert_cardinality(len(kept)))
    return ds, kept
