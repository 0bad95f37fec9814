"""Exceptions and warnings raised by mmtl_tf (no TensorFlow import here)."""

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


class DataWarning(UserWarning):
    """Items were skipped because of `on_error="skip"`; the message lists them.

    Args:
        message: str.
        problems: list of (location, problem) tuples: every skipped item (the
            message shows the first ten).
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


def handle_problems(problems, on_error, what, total=None):
    """Raises `DataError` or warns about skipped items, depending on `on_error`.

    Args:
        problems: list of (location, problem) pairs; nothing happens if empty.
        on_error: str. `"raise"` or `"skip"`.
        what: str. What the items are, for the message ("image files", "rows").
        total: int or None. How many items there were: if every one is bad,
            `"skip"` raises too (it would leave nothing to train or evaluate on).
    """
    check_on_error(on_error)
    if not problems:
        return
    if on_error == "skip" and total is not None and len(problems) >= total:
        raise DataError(
            f"all {total} {what} are bad, so on_error='skip' would leave none:\n"
            f"{format_problems(problems)}", problems)
    if on_error == "raise":
        raise DataError(
            f"{len(problems)} bad {what}:\n{format_problems(problems)}\n"
            "Fix or remove them, or pass on_error='skip' to skip them.",
            problems)
    import warnings

    warnings.warn(DataWarning(
        f"skipped {len(problems)} bad {what} (on_error='skip'):\n"
        f"{format_problems(problems)}", problems), stacklevel=_caller_level())


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
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln != "Graph execution error:"]
    # Graph errors end with the failing op's message after the traceback.
    message = lines[-1] if lines else type(error).__name__
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message)
    return message.strip() or type(error).__name__


def without_repeated_warnings(load, *args, **kwargs):
    """`load(*args, **kwargs)` without emitting `DataWarning`s: for a second
    read of a source whose skipped rows the first read already reported (e.g.
    the training split, read again to adapt a vocabulary)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load(*args, **kwargs)


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
