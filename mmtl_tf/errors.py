"""Exceptions and warnings raised by mmtl_tf (no TensorFlow import here)."""


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
    """Items were skipped because of `on_error="skip"`; the message lists them."""


def format_problems(problems, limit=10):
    """Formats `(location, problem)` pairs as indented lines, at most `limit`."""
    lines = [f"  {loc}: {why}" for loc, why in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def handle_problems(problems, on_error, what):
    """Raises `DataError` or warns about skipped items, depending on `on_error`.

    Args:
        problems: list of (location, problem) pairs; nothing happens if empty.
        on_error: str. `"raise"` or `"skip"`.
        what: str. What the items are, for the message ("image files", "rows").
    """
    check_on_error(on_error)
    if not problems:
        return
    if on_error == "raise":
        raise DataError(
            f"{len(problems)} bad {what}:\n{format_problems(problems)}\n"
            "Fix or remove them, or pass on_error='skip' to skip them.",
            problems)
    import warnings

    warnings.warn(
        f"skipped {len(problems)} bad {what} (on_error='skip'):\n"
        f"{format_problems(problems)}", DataWarning, stacklevel=3)


def check_on_error(on_error):
    if on_error not in ("raise", "skip"):
        raise ValueError(
            f"on_error={on_error!r} is not allowed; use 'raise' or 'skip'.")
