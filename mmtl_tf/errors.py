"""Exceptions and warnings raised by mmtl_tf (no TensorFlow import here)."""

import contextlib
import contextvars
import os
import re
import sys


class DataError(ValueError):
    """Bad input data: names the file or row and what is wrong with it.

    Args:
        message: str. What is wrong, including the file path or row number.
        problems: list of (location, problem) tuples, one per bad item, when the
            error is about several items at once.
    """

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems or [])


class DownloadError(RuntimeError):
    """Something had to be downloaded (a TFDS dataset, pretrained weights, a
    keras-hub preset, a PyPI wheel) and could not be: no internet, or the
    source failed. The message says how to provide it offline."""


class RunReplacedWarning(RuntimeWarning):
    """Training replaced a run that another training finished in its run
    folder while it trained (`mmtl-tf train ... --out` the same folder, both
    at once): the message names the replaced run (its `run_id` and start
    time) and says whether its files are gone. `mmtl-tf` prints it in one
    line."""


class KeptFilesWarning(RuntimeWarning):
    """Files that no run (or export) writes were put into a run folder (or a
    SavedModel folder) while training (or the export) ran, which then
    replaced the folder: they were kept, in a folder beside it that the
    message names (`NAME.replaced-XXXXXXXX`, or the hidden `.NAME.old-…` if
    that rename failed), instead of being deleted with the old content.
    `mmtl-tf` prints it in one line."""


class DataWarning(UserWarning):
    """A problem with the data that does not stop the run: items skipped
    because of `on_error="skip"` (the message lists them), most training
    texts longer than `sequence_length` (`mmtl_tf.data.text.warn_if_truncated`),
    or validation / test rows holding a training row's file or text
    (`mmtl_tf.data.sources.warn_if_splits_overlap`).

    Args:
        message: str.
        problems: list of (location, problem) tuples: every skipped item (the
            message shows the first ten) or overlapping row (the first five).
    """

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems or [])


def format_problems(problems, limit=10):
    """Formats `(location, problem)` pairs as indented lines, at most `limit`."""
    lines = [f"  {loc}: {why}" for loc, why in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


_FIX_HINT = "Fix or remove them, or pass on_error='skip' to skip them."


def _singular(what):
    """"row" for "rows" (`what` names the items in the plural)."""
    return what[:-1] if what.endswith("s") else what


def _bad(count, what):
    """"1 bad row", "2 bad rows"."""
    return f"{count} bad {_singular(what) if count == 1 else what}"


def _of_split(split):
    """" in the validation split" (or "" for None)."""
    return f" in the {split} split" if split else ""


def _bad_items_message(groups, extra=None):
    """The `DataError` message for groups of (what, split or None,
    problems), plus the message of one other `DataError` (`extra`) raised
    meanwhile."""
    parts = [f"{_bad(len(problems), what)}{_of_split(split)}:\n{format_problems(problems)}"
             for what, split, problems in groups]
    if extra is not None:
        parts.append(str(extra))
    if groups:
        parts.append(_FIX_HINT)
    return "\n".join(parts)


_SPLIT = contextvars.ContextVar("mmtl_tf_loading_split", default=None)


@contextlib.contextmanager
def loading_split(split):
    """Within the block, bad files found by `handle_problems(...,
    split=current_split())` are said to be the `split` split's ("2 bad image
    files in the validation split"): a run loads each split's files in turn,
    and each split's problems were reported alike, in one list or in three
    warnings, without the split."""
    token = _SPLIT.set(split)
    try:
        yield
    finally:
        _SPLIT.reset(token)


def current_split():
    """The split of the innermost `loading_split` block, or None."""
    return _SPLIT.get()


def handle_problems(problems, on_error, what, total=None, split=None):
    """Raises `DataError` or warns about skipped items, depending on `on_error`.

    Inside `collect_problems()`, `on_error="raise"` records the problems
    instead and returns as `"skip"` would (without a warning), so that the
    block finds the bad items of every file and split before raising.

    Args:
        problems: list of (location, problem) pairs; nothing happens if empty.
        on_error: str. `"raise"` or `"skip"`.
        what: str. What the items are, for the message ("image files", "rows").
        total: int or None. How many items there were: if every one is bad,
            `"skip"` raises too (it would leave nothing to train or evaluate on).
        split: str or None. The split the items belong to, for the message.
    """
    check_on_error(on_error)
    if not problems:
        return
    if on_error == "skip" and total is not None and len(problems) >= total:
        every = (f"the only {_singular(what)}{_of_split(split)} is" if total == 1
                 else f"all {total} {what}{_of_split(split)} are")
        raise DataError(
            f"{every} bad, so on_error='skip' would leave none:\n"
            f"{format_problems(problems)}", problems)
    if on_error == "raise":
        collected = _COLLECTED.get()
        if collected is None:
            raise DataError(_bad_items_message([(what, split, list(problems))]), problems)
        collected.add(what, split, problems)
        if total is not None and len(problems) >= total:
            collected.raise_now()  # nothing left to carry on with
        return
    import warnings

    warnings.warn(DataWarning(
        f"skipped {_bad(len(problems), what)}{_of_split(split)} (on_error='skip'):\n"
        f"{format_problems(problems)}", problems), stacklevel=_caller_level())


class _Collected:
    """Problems gathered by `collect_problems()`, grouped by what the items
    are and their split (where known), without repeats (a split's rows may
    be read twice)."""

    def __init__(self):
        self.groups = {}  # (what, split) -> {(location, problem): None}, in order

    def add(self, what, split, problems):
        group = self.groups.setdefault((what, split), {})
        for item in problems:
            group[tuple(item)] = None

    def problems(self):
        return [item for group in self.groups.values() for item in group]

    def error(self, extra=None):
        groups = [(what, split, list(group)) for (what, split), group in self.groups.items()]
        more = list(getattr(extra, "problems", []))
        error = DataError(_bad_items_message(groups, extra), self.problems() + more)
        error.collected = True
        return error

    def raise_now(self):
        raise self.error()


_COLLECTED = contextvars.ContextVar("mmtl_tf_collected_problems", default=None)


@contextlib.contextmanager
def collect_problems():
    """Within the block, bad files and rows under `on_error="raise"` are
    gathered and raised as one `DataError` at its end, so that one run shows
    the problems of every split and file instead of the first split's.

    The code in the block carries on without the bad items (as with
    `"skip"`, minus the warning) until `raise_collected_problems()` or the end
    of the block; call the former before anything that must not happen with
    bad data (training, writing results). Another `DataError` raised in the
    block is reported together with the gathered problems; any other
    exception raised after problems were gathered (it may follow from the
    missing items) is chained to that `DataError`. Nested blocks report at
    the outermost one's end.

    Example:
        >>> import mmtl_tf
        >>> from mmtl_tf.errors import collect_problems, handle_problems
        >>> try:
        ...     with collect_problems():  # e.g. around the datasets of each split
        ...         handle_problems([("a.csv:2", "empty caption")], "raise", "rows")
        ...         handle_problems([("a.csv:9 (x.png)", "file not found")], "raise",
        ...                         "image files")
        ... except mmtl_tf.DataError as error:
        ...     print(error)
        1 bad row:
          a.csv:2: empty caption
        1 bad image file:
          a.csv:9 (x.png): file not found
        Fix or remove them, or pass on_error='skip' to skip them.
    """
    if _COLLECTED.get() is not None:
        yield
        return
    collected = _Collected()
    token = _COLLECTED.set(collected)
    try:
        yield
    except DataError as e:
        if getattr(e, "collected", False) or not collected.groups:
            raise
        raise collected.error(extra=e) from None
    except Exception as e:
        if not collected.groups:
            raise
        raise collected.error() from e
    finally:
        _COLLECTED.reset(token)
    if collected.groups:
        collected.raise_now()


def raise_collected_problems():
    """Raises the problems `collect_problems()` has gathered so far, if any
    (a no-op outside such a block)."""
    collected = _COLLECTED.get()
    if collected is not None and collected.groups:
        collected.raise_now()


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_level():
    """`stacklevel` for a warning raised by this module's caller, so that it
    points at the first frame outside mmtl_tf (the user's line)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def describe_op_error(error):
    """The useful line of a TensorFlow op error's message, for messages that
    name a file: without the `{{function_node ...}}` prefix, the `[Op:...]`
    suffix, a leading "Graph execution error:" and the traceback of the
    Python code that built the graph."""
    text = getattr(error, "message", None) or str(error)
    # Errors of ops inside a called function end with a line naming the
    # node, `[[{{node ...}}]] [Op:...]`, after the op's message.
    lines = [re.sub(r"\s*\[\[\{\{node [^}]*\}\}\]\]|\s*\[Op:[^\]]*\].*$", "", ln).strip()
             for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln and ln != "Graph execution error:"]
    # Graph errors end with the failing op's message after the traceback.
    message = lines[-1] if lines else type(error).__name__
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    return message.strip() or type(error).__name__


def without_repeated_warnings(load, *args, **kwargs):
    """`load(*args, **kwargs)` without emitting `DataWarning`s: for a second
    read of a source whose skipped rows the first read already reported (e.g.
    the training split, read again to adapt a vocabulary)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load(*args, **kwargs)


def augment_for_split(augment, split):
    """Whether a dataset builder augments `split`: the training split only.
    `augment=True` for another split is ignored with a `UserWarning`, so that
    passing one set of options to every split never scores a model on
    randomly changed images."""
    import warnings

    if augment and split != "train":
        warnings.warn(f"augment=True is ignored for the {split!r} split: only the training "
                      "split is augmented (evaluation sees the images as they are). To "
                      "change other images, map mmtl_tf.data.augment_image over them.",
                      UserWarning, stacklevel=_caller_level())
    return bool(augment) and split == "train"


def check_on_error(on_error):
    if on_error not in ("raise", "skip"):
        raise ValueError(
            f"on_error={on_error!r} is not allowed; use 'raise' or 'skip'.")


def check_choice(name, value, allowed):
    """A `ValueError` "NAME=VALUE is not allowed; use one of ..." unless
    `value` is in `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; use one of "
                         f"{', '.join(map(repr, allowed))}.")


def check_count(name, value, minimum=1):
    """`value` as an int, or a `ValueError` "NAME must be an integer >= MINIMUM"
    (floats such as 2.5 and bools are refused; NumPy integers are accepted)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_counts(name, value, allow_empty=False, each="item"):
    """`value` as a tuple of ints >= 1, one per `each` (an int is one; NumPy
    integers are accepted, floats and bools refused), or a `ValueError`
    naming `name` and the value. With `allow_empty`, None and () give ()."""
    import numbers

    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    original = value
    try:
        values = tuple(value or ()) if allow_empty else tuple(value)
    except TypeError:
        values = None
    if values is None or (not values and not allow_empty) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
            for v in values):
        what = "positive ints, an integer >= 1 or a sequence" if allow_empty else \
            "an integer >= 1 or a non-empty sequence"
        raise ValueError(f"{name} must be {what} of them (one per {each}), got {original!r}.")
    return tuple(int(v) for v in values)


def check_texts(texts, name="texts"):
    """A `ValueError` if `texts` is a bare str or bytes (which would be read
    as a list of characters) instead of a list of texts."""
    if isinstance(texts, (str, bytes)):
        shown = texts if len(texts) <= 40 else texts[:37] + ("..." if isinstance(texts, str)
                                                             else b"...")
        raise ValueError(f"{name} is a single string ({shown!r}), which would be read as a "
                         f"list of characters; pass a list of texts, e.g. [{shown!r}].")
