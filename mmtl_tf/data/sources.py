"""Where image-caption data comes from: captions files in a folder, the bundled
default sample, and TFDS names (for users with internet).

A captions file is CSV (with a header; separated by commas, semicolons or
tabs) or JSON Lines, one row per image, with the columns (names in any case)
`path` (relative to the file's folder, or absolute; `\\` separators of a
file written on Windows and names in the other Unicode form work too:
`row_path`), `caption` and, for
classification, `label`. An optional `split` column assigns rows to
`train` / `validation` / `test`. A folder may instead hold one file per split
(`train.jsonl`, `validation.csv`, ...). Without either, rows are split
80 / 10 / 10 by a hash of their path (relative to the file's folder) and a
seed, so the split never changes when rows are added or reordered or the
folder is moved.
"""

import contextlib
import contextvars
import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import sys
import unicodedata

import numpy as np

from mmtl_tf.errors import (DataError, DataWarning, _caller_level, check_on_error,
                            format_problems, handle_problems)
from mmtl_tf.files import file_identity, user_path

SPLITS = ("train", "validation", "test")
CAPTION_FILE_NAMES = ("captions.jsonl", "captions.csv")
DEFAULT_SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "default_sample")


@dataclasses.dataclass
class ImageTextRecords:
    """Rows of an image-caption source, one split.

    Attributes:
        paths: list of str. Absolute image paths.
        captions: list of str.
        labels: list of str or None. Class names as written in the file.
        rows: list of str. "file:line" of each row, for error messages.
        class_names: list of str. Sorted labels of the *training* split
            (numerically if all are integers: `sorted_class_names`).
        root: str. The folder the paths are relative to.
    """

    paths: list
    captions: list
    labels: list
    rows: list
    class_names: list
    root: str

    # The attributes that hold one value per row (subclasses add theirs).
    ROW_FIELDS = ("paths", "captions", "labels", "rows")

    def __len__(self):
        return len(self.paths)

    def label_ids(self):
        """Labels as an int32 NumPy array indexing `class_names` (Keras' `fit`
        takes it beside NumPy inputs; it refuses a list there)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.asarray([index[label] for label in self.labels], np.int32)

    def subset(self, keep):
        """A copy with only the rows whose positions are in `keep`."""
        keep = sorted(keep)
        return dataclasses.replace(
            self, **{name: [getattr(self, name)[i] for i in keep] for name in self.ROW_FIELDS})


def resolve_source(source):
    """Maps `"default"`, a folder or a captions file to (kind, path)."""
    if source in (None, "default"):
        return "dir", DEFAULT_SAMPLE_DIR
    source = user_path(source)
    if source.startswith("tfds:"):
        return "tfds", source[5:]
    if os.path.isdir(source):
        return "dir", source
    if os.path.isfile(source):
        return "file", source
    raise DataError(
        f"{source}: no such folder or captions file (expected 'default', a folder "
        "with captions.jsonl / captions.csv or train/validation/test files, or a "
        "captions file).")


def check_columns(where, row, required):
    """Raises a `DataError` naming the `required` columns that `row` (the first
    row of a file, as a dict) lacks, and the columns it has."""
    missing = [c for c in required if c not in row]
    if missing:
        renames = [f"{other} to {name}" for name in missing
                   for other in [next((a for a in _COLUMN_ALIASES.get(name, ())
                                       if a in row and a not in required), None)] if other]
        # UTF-16 without a byte order mark reads as UTF-8 with a zero byte
        # after (or before) every ASCII character: "p\0a\0t\0h\0".
        utf16 = any("\0" in str(name) for name in row)
        raise DataError(
            f"{where}: missing column(s) {', '.join(missing)} (found "
            f"{', '.join(map(_printable, row)) or 'none'}; required: {', '.join(required)})"
            + (f"; rename {', '.join(renames)}" if renames else "")
            + ("; the file looks like UTF-16 without a byte order mark (zero bytes between "
               "the letters): save it as UTF-8" if utf16 else "") + ".")


def _printable(name):
    """A column name for a message, its unprintable characters escaped (the
    zero bytes of UTF-16 read as UTF-8 went to the terminal raw, and `grep`
    took the output for binary)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in str(name))


# Names other datasets and tools give the columns mmtl_tf reads (Hugging
# Face's ImageFolder `metadata.csv` has `file_name` and often `text`), for
# the missing-column message; not read as those columns.
_COLUMN_ALIASES = {
    "path": ("file_name", "filename", "file", "filepath", "file_path", "image", "image_path",
             "image_file", "img", "audio", "audio_path", "audio_file"),
    "caption": ("text", "captions", "description", "sentence", "title"),
    "text": ("caption", "sentence", "review", "content", "body", "document"),
    "label": ("labels", "class", "category", "class_name", "target", "sentiment"),
}


def _problem(problems, loc, why):
    """Adds `(loc, why)` to `problems`, or raises it as a `DataError` if None."""
    if problems is None:
        raise DataError(f"{loc}: {why}.")
    problems.append((loc, why))


def is_jsonl(path):
    """Whether a data file is JSON Lines (`.jsonl` / `.json`, any case); else CSV."""
    return os.fspath(path).lower().endswith((".jsonl", ".json"))


def _read_rows(path, problems=None):
    """Yields (line_number, dict) from a CSV or JSONL file.

    Lines that cannot be read as a row (see `jsonl_rows`, `csv_rows`) are
    added to `problems` as `("file:line", why)`, or raise a `DataError` if
    `problems` is None.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror}).") from e
    kind = _media_kind(raw)
    if kind:  # e.g. --data clip.wav: not "not valid UTF-8"
        raise DataError(f"{path}: an {kind} file, not a captions or labels file (.csv or "
                        ".jsonl); pass the captions or labels file, or the folder that holds "
                        "the data.")
    raw = _utf16_as_utf8(path, raw)
    if is_jsonl(path):
        yield from jsonl_rows(path, raw, problems)
    else:
        yield from csv_rows(path, raw, problems)


_MAGIC = ((b"OggS", "audio (Ogg)"), (b"fLaC", "audio (FLAC)"), (b"ID3\x02", "audio (MP3)"),
          (b"ID3\x03", "audio (MP3)"), (b"ID3\x04", "audio (MP3)"),
          (b"\x89PNG\r\n", "image (PNG)"), (b"\xff\xd8\xff", "image (JPEG)"),
          (b"GIF87a", "image (GIF)"), (b"GIF89a", "image (GIF)"))


def _media_kind(raw):
    """"audio (Ogg)", "image (PNG)", ... for the bytes of a media file, else None."""
    if raw[:4] == b"RIFF" and raw[8:12] in (b"WAVE", b"WEBP"):
        return "audio (WAV)" if raw[8:12] == b"WAVE" else "image (WebP)"
    if _mpeg_audio_frame(raw):
        return "audio (MP3)"
    return next((kind for magic, kind in _MAGIC if raw.startswith(magic)), None)


def _mpeg_audio_frame(raw):
    """True when `raw` starts with an MPEG audio frame header of layer II or
    III (an MP3 written without an ID3 tag, as soundfile and `lame --noid3`
    write them, was read as a CSV: "not valid UTF-8: byte 0xFF"): 11 sync
    bits, a version other than the reserved one, layer II or III, a bitrate
    index other than 15 and a sampling rate other than the reserved one.
    UTF-16's byte order mark FF FE reads as layer I and is not taken."""
    if len(raw) < 3 or raw[0] != 0xFF or raw[1] & 0xE0 != 0xE0:
        return False
    version, layer = (raw[1] >> 3) & 3, (raw[1] >> 1) & 3
    return version != 1 and layer in (1, 2) and raw[2] >> 4 != 15 and (raw[2] >> 2) & 3 != 3


def jsonl_rows(path, raw, problems=None):
    """Yields (line_number, dict) of a JSON Lines file's bytes.

    Lines are split at "\\n" only (a JSON string may hold U+2028 or U+0085,
    which `str.splitlines` would split at); blank lines are skipped. A line
    that is not UTF-8, not valid JSON or not an object goes to `problems`
    (raises if None), so the other lines can still be used. A file that is
    one JSON array raises a `DataError` saying so.
    """
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[") and _is_json_array(raw):
        raise DataError(f"{path}: one JSON array; expected JSON Lines: one JSON object "
                        "per line, without the enclosing [ ] and the commas between rows.")
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if n == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line.strip():
            continue
        loc = f"{path}:{n}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            _problem(problems, loc, f"not valid UTF-8: byte 0x{line[e.start]:02X} at byte "
                                    f"{e.start} of the line, in \"{_near(line, e.start)}\"; "
                                    "write the file as UTF-8")
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            _problem(problems, loc, f"invalid JSON ({e.msg})")
            continue
        if not isinstance(row, dict):
            _problem(problems, loc, "expected a JSON object per line")
            continue
        keys, why = _column_names(list(row), "keys")
        if why:
            _problem(problems, loc, why)
            continue
        yield n, dict(zip(keys, row.values()))


def _is_json_array(raw):
    try:
        return isinstance(json.loads(raw.decode("utf-8-sig")), list)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def _utf16_as_utf8(path, raw):
    """The bytes of a file that starts with a UTF-16 byte order mark (what
    Excel's "Unicode Text" and Windows' Notepad "Unicode" write), as UTF-8;
    other bytes as they are. The lines are the same lines."""
    if not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw
    try:
        return raw.decode("utf-16").encode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: starts as UTF-16 text (a byte order mark) but is not valid "
                        f"UTF-16 (byte offset {e.start}); save it as UTF-8.") from e


# What to do about a file that is not UTF-8: most often a spreadsheet saved
# in the system's legacy encoding (Excel's "CSV (Comma delimited)" on Windows).
_SAVE_AS_UTF8 = ('save it as UTF-8 (in Excel: Save As "CSV UTF-8"; in LibreOffice: '
                 'character set "Unicode (UTF-8)")')


def _decode_utf8(path, raw):
    """UTF-8 text of a file's bytes (BOM dropped); a `DataError` names the bad
    line, the byte and the words around it, and says how to save the file."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8: byte 0x{raw[e.start]:02X} at offset {e.start}, "
            f"in \"{_near(raw, e.start)}\"; {_SAVE_AS_UTF8}.") from e


def _near(raw, at):
    """The text of `raw` bytes around offset `at`, within its line (up to 20
    bytes each side), undecodable bytes written as `\\xE9`."""
    start = raw.rfind(b"\n", 0, at) + 1
    near = raw[max(start, at - 20):at + 20].split(b"\n")[0]
    return near.decode("utf-8", "backslashreplace")


def _column_names(names, what="columns"):
    """`(names stripped and in lower case, None)`: column names match in any
    case, spaces around them ignored (`Path`, ` caption`); or `(None,
    problem)` when two names then read the same (empty names aside: the
    unnamed columns of a spreadsheet's trailing separators)."""
    keys, first = [], {}
    for name in names:
        key = name.strip().lower() if isinstance(name, str) else name
        if key and key in first:
            other = first[key]
            return None, (f"{what} {other!r} and {name!r} "
                          + ("differ only in case or spaces" if other != name else
                             "are the same") + "; rename one")
        first.setdefault(key, name)
        keys.append(key)
    return keys, None


# The separators of a CSV file: a spreadsheet where "," is the decimal mark
# (Excel in much of Europe) writes ";", and a tab-separated file may be
# saved as .csv. Told from the header line (no column name holds one).
_SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs"}


def _csv_separator(text):
    """The separator of a CSV file's `text`: "," if its first non-blank line
    holds one, else the more frequent of ";" and tab there (else ",")."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    if "," in header:
        return ","
    count, separator = max((header.count(c), c) for c in ";\t")
    return separator if count else ","


def csv_rows(path, raw, problems=None):
    """Yields (line_number, dict) of a CSV file's bytes (with a header row).

    Values are separated by commas, or by semicolons or tabs when the header
    line holds no comma (`_csv_separator`); column names match in any case
    (`_column_names`: two that differ only in case raise a `DataError`).
    A row with more fields than the header (typically an unquoted comma inside
    a caption, which would shift the columns) goes to `problems` (raises if
    None). Missing trailing fields read as empty, with a `DataWarning` that
    names the lines and the columns left empty (a row without its `split`
    value was placed by the hash rule, silently: a test row could train). A
    file that is not UTF-8 raises (its rows cannot be told apart).
    """
    # No field-size limit (the csv module stops at 131,072 characters, which
    # a long text passes), and strict quoting: an unbalanced quote otherwise
    # swallowed every following row into one field, silently.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = _decode_utf8(path, raw)
    separator = _csv_separator(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    header, end, short = None, 0, []
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path}:{end + 1}: not valid CSV ({e}); a value that contains "
                            "a quote must be quoted with the quote doubled, e.g. "
                            "\"a \"\"quoted\"\" word\".") from None
        start, end = end + 1, reader.line_num  # a quoted value may span lines
        if not fields:
            continue
        if header is None:
            header, why = _column_names(fields)
            if why:
                raise DataError(f"{path}:{start}: {why}.")
            continue
        if len(fields) > len(header):
            _problem(problems, f"{path}:{start}",
                     f"{len(fields)} fields but the header has {len(header)} "
                     f"(quote values that contain {_SEPARATORS[separator]})")
            continue
        # A row is named by the line it starts on; missing trailing fields are None.
        if any(header[len(fields):]):  # (unnamed trailing columns may be left out)
            short.append((start, len(fields)))
        yield start, dict(zip(header, fields + [None] * (len(header) - len(fields))))
    if short:
        _warn_short_rows(path, header, short)


def unset_split(path, row):
    """Whether a row read from `path` has an empty or null split value or no
    `split` key (JSONL), leaving out a CSV row short of its split field,
    which `csv_rows` warns about already."""
    value = row.get("split")
    if value is None:
        return is_jsonl(path)
    return isinstance(value, str) and not value.strip()


class FileRows(list):
    """The rows a reader returns (`read_captions_file`, ...): a list, with
    the file's `path` and the "file:line" of its rows whose split value is
    unset (`unset_split`), for `warn_if_partly_split`."""

    def __init__(self, rows, path, unsplit, skipped_labels=()):
        super().__init__(rows)
        self.path, self.unsplit = path, list(unsplit)
        self.skipped_labels = list(skipped_labels)  # of the rows skipped as bad


def labels_of_bad_row(row, read_label):
    """The labels of a row skipped as bad, for `warn_if_classes_skipped`:
    `read_label(row)` is `(label or list of labels, problem)`; none when the
    label itself is the row's problem, or when the row's `split` names
    another split than training (a test-only class was said to have lost
    its training rows)."""
    label, problem = read_label(row)
    split, _ = split_field(row)
    if problem or split not in (None, "train"):
        return []
    return list(label) if isinstance(label, (list, tuple)) else [label]


def skipped_training_labels(whole, per_split):
    """The labels of the rows skipped as bad that could have trained: every
    bad row's of one whole file (`whole`, a `FileRows`, whose rows are split
    after reading), else those of the per-split training file's."""
    rows = whole if whole is not None else per_split.get("train")
    return getattr(rows, "skipped_labels", [])


def warn_if_classes_skipped(where, skipped_labels, class_names):
    """A `DataWarning` naming the labels of rows skipped as bad that are not
    among `class_names` (the training split's, after skipping): a class
    whose every training row was bad (e.g. empty texts or captions, a box
    out of the image) dropped out of the model without a word, and its other
    rows read only as "label ... does not occur in the training split"."""
    lost = sorted(set(skipped_labels) - set(class_names))
    if lost:
        import warnings

        warnings.warn(DataWarning(
            f"{where}: class(es) {', '.join(map(repr, lost))} had rows skipped as bad and no "
            "training row of theirs is left, so they are not classes of the model (their "
            "validation and test rows are skipped too)"), stacklevel=_caller_level())


def warn_if_partly_split(rows):
    """One `DataWarning` when some of a whole file's rows (`FileRows`) name a
    split and others (`rows.unsplit`, see `unset_split`) do not, which the
    caller is about to place by the hash rule: 80/10/10, mostly into
    training. A helper's three rows meant for test, with `"split": null`, the
    key left out and `""`, all trained, without a word. Nothing is said inside
    `unsplit_rows_in` (they go to the split evaluated) and for per-split
    files (whose callers do not call this)."""
    unsplit, path = getattr(rows, "unsplit", None), getattr(rows, "path", None)
    if (not unsplit or _UNSPLIT_ROWS_IN.get() is not None
            or not any(r["split"] is not None for r in rows)):
        return
    import warnings

    more = f" and {len(unsplit) - 10} more" if len(unsplit) > 10 else ""
    warnings.warn(DataWarning(
        f"{path}: {len(unsplit)} of {len(rows)} rows name no split (an empty or missing "
        f"split value: line(s) {', '.join(row.rsplit(':', 1)[-1] for row in unsplit[:10])}"
        f"{more}) while the others do; they are split "
        "80/10/10 by the hash rule, most of them into training: give each its split value",
        [(row, "no split value") for row in unsplit]), stacklevel=_caller_level())


def _warn_short_rows(path, header, short):
    """The `DataWarning` of `csv_rows` for rows (line, field count) holding
    fewer fields than `header`."""
    import warnings

    lines = ", ".join(str(line) for line, _ in short[:10])
    more = f" and {len(short) - 10} more" if len(short) > 10 else ""
    missing = [name for name in header[min(count for _, count in short):] if name]
    split = (" (a row without its split value is placed by the hash rule, like one "
             "whose split is empty)") if "split" in missing else ""
    warnings.warn(DataWarning(
        f"{path}: {len(short)} row(s) hold fewer fields than the header's {len(header)} "
        f"(line(s) {lines}{more}); their missing trailing values "
        f"({', '.join(map(repr, missing))}) read as empty{split}: add the missing "
        f"separators, or the values"), stacklevel=_caller_level())


def _visible(char):
    """Whether a tokenizer keeps `char`: not a control or format character
    (a zero-width space, a byte-order mark, a joiner), not a space or line
    separator, not U+FFFD (the replacement for undecodable bytes), which
    BERT's text cleaning and `TextVectorization`'s splitting remove."""
    return char != "\ufffd" and unicodedata.category(char) not in ("Cc", "Cf", "Zs", "Zl", "Zp")


def _describe_value(value):
    """A JSON value's kind and (shortened) text, for messages."""
    kind = {list: "a list", dict: "an object", bool: "a boolean"}.get(type(value), "a number")
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return f"{kind} ({text[:40]}{'...' if len(text) > 40 else ''})"


def text_field(row, column, name=None):
    """`(text, None)`: the stripped string in `row[column]`, or `(None, problem)`
    if it is missing (a JSON Lines row without the key says so), blank or
    not a string (a JSON number, list, ...)."""
    name = name or column
    value = row.get(column)
    if isinstance(value, str) and value.strip():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # a JSON "\ud83d" escape: half of an emoji
            return None, (f"{name} holds a lone surrogate (U+{ord(value[e.start]):04X}, "
                          "e.g. an emoji cut in half): not valid Unicode")
        if not any(map(_visible, value)):
            codes = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(value.strip()))
            return None, (f"empty {name}: it holds only invisible characters ({codes}), "
                          "which tokenizers remove")
        return value.strip(), None
    if column not in row:  # a JSON Lines row without the key (it said "empty label")
        return None, f"no {name} (the row has no {column!r} field)"
    if value is None or isinstance(value, str):
        return None, f"empty {name}"
    return None, f"{name} is {_describe_value(value)}, not a string"


# The end of `label_field`'s problem for a label that is a list written as text.
LIST_AS_TEXT = "looks like a list written as text (pandas writes a list column so)"


def label_field(row, column="label"):
    """`(label, None)`: a row's class name as a stripped string (a JSON integer
    becomes its digits), or `(None, problem)` if it is missing, blank or of
    another type (a float, list or object would make classes that only look
    alike, e.g. 1 and 1.0), or a list written as text (`"['red', 'blue']"`,
    `'["red"]'`: each such cell became a class of its own)."""
    value = row.get(column)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    label, why = text_field(row, column)
    # Brackets around nothing, quoted names or commas ("[]", "['a', 'b']",
    # '["a"]', "[a, b]"); a name in brackets ("[other]", "[don't know]") is a name.
    inner = label.strip()[1:-1].strip() if label is not None and \
        re.fullmatch(r"\[.*\]", label.strip(), re.DOTALL) else None
    if inner is not None and (not inner or "," in inner or (
            len(inner) > 1 and inner[0] in "'\"" and inner[-1] == inner[0])):
        return None, f"{column} {label.strip()!r} {LIST_AS_TEXT}"
    return (class_name(label) if label is not None else None), why


def class_name(label):
    """A class name in Unicode NFC, stripped of surrounding spaces: "café"
    typed (NFC) and "café" from a macOS folder name (NFD) look the same and
    must be one class, not two; so must folders `red` and `red ` (a label in
    a labels file was stripped, a class folder's name was not)."""
    return unicodedata.normalize("NFC", label).strip()


def given_class_names(class_names):
    """`class_names` passed to a loader (a trained model's classes) as class
    names (`class_name`); a `ValueError` for a bare string (`"red"` was read
    as the classes 'r', 'e', 'd') or names that are not strings."""
    given = class_names
    try:
        if isinstance(class_names, (str, bytes)):
            raise TypeError
        class_names = list(class_names)   # also a NumPy array, dict keys, ...
    except TypeError:
        raise ValueError(f"class_names must be a list of class names (str), got "
                         f"{given!r}.") from None
    wrong = [c for c in class_names if not isinstance(c, str)]
    if wrong:
        raise ValueError(f"class_names must be a list of str; {wrong[0]!r} is a "
                         f"{type(wrong[0]).__name__}.")
    names = [class_name(c) for c in class_names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        # e.g. the classes of a run trained on folders "red" and "red ".
        spelt = [repr(c) for c in class_names if class_name(c) == twice[0]]
        raise ValueError(f"class_names names {twice[0]!r} more than once once stripped of "
                         f"spaces and put in Unicode NFC ({', '.join(spelt)}); give each "
                         "class one name.")
    return names


_INTEGER = re.compile(r"-?[0-9]+")


def sorted_class_names(labels):
    """The class names of `labels` (str) in the order class ids index them:
    numerically when every label is an integer written in digits (`"2"`
    before `"10"`; JSON integers become their digits, see `label_field`;
    also class folders named by digits), else in string order.

    Example:
        >>> sorted_class_names(["10", "2", "0", "2"])
        ['0', '2', '10']
        >>> sorted_class_names(["10", "2", "cat"])
        ['10', '2', 'cat']
    """
    names = set(labels)
    if names and all(_INTEGER.fullmatch(name) for name in names):
        # "01" and "1" are two classes: the string orders them among equals.
        return sorted(names, key=lambda name: (int(name), name))
    return sorted(names)


def row_path(root, value):
    """The file that a captions or labels file's row names: `value` relative
    to `root`, the file's folder (or absolute). When no file has the name as
    written, a file whose name is the same text otherwise written is taken
    (one file stat more for such rows; plain ASCII paths with "/" pay
    nothing):

    - where "/" separates folders, a path written on Windows
      (`images\\cat.jpg`) names `images/cat.jpg`;
    - a name with accents in the other Unicode form: a file named on macOS
      (or unzipped from an archive made there) may spell "é" as "e" and a
      combining accent (NFD), where the text typed in the file has one
      character (NFC), or the other way round.
    """
    path = os.path.join(root, value)
    posix = os.sep == "/" and "\\" in value
    if (value.isascii() and not posix) or os.path.lexists(path):
        return path
    spellings = ([value.replace("\\", "/")] if posix else []) + [value]
    others = dict.fromkeys(spelled for text in spellings
                           for spelled in (text, unicodedata.normalize("NFC", text),
                                           unicodedata.normalize("NFD", text)))
    others.pop(value)
    return next((os.path.join(root, other) for other in others
                 if os.path.lexists(os.path.join(root, other))), path)


# A URL where a file's path belongs ("https://...", "s3://...").
_URL = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://")
# A Windows drive ("C:\\", "D:/") starting a path written in a row.
_DRIVE = re.compile(r"(?:^|/)([A-Za-z]:[\\/])")


def missing_file_problem(path):
    """Why there is no file at `path`, for a bad row's message: "file not
    found", and, where that points at the fix, what is there instead: a URL
    in the path's place (files are read from disk), the missing folder (a
    dataset not unpacked, a folder renamed), or a name that differs only in
    case (Windows and macOS ignore case, Linux does not). The names of a
    folder are listed once while it is unchanged, however many of its files
    are missing."""
    from mmtl_tf.files import missing_top

    path = os.fspath(path)
    url = _URL.search(path)  # before `abspath`, which makes "//" one "/"
    if url:
        return (f"file not found: {path[url.start():]} is a URL; files are read from disk: "
                "download them and write their local paths")
    drive = _DRIVE.search(path) if os.sep == "/" else None
    if drive:
        return (f"file not found: {path[drive.start(1):]} is a Windows path; write paths "
                "relative to the file that lists them, which then work on any system")
    path = os.path.abspath(path)
    top = missing_top(path)
    if top is None:  # there after all, or a link that leads nowhere
        return _broken_link_problem(path) or "file not found"
    parent, name = os.path.split(top)
    try:
        like = _names_by_key(parent, os.stat(parent).st_mtime_ns).get(_name_key(name))
    except OSError:
        like = None
    kind = "file" if top == path else "folder"
    if like is not None:
        return (f"file not found: no {kind} {name!r} in {parent}, but {like!r} is there "
                "(the names differ in case, which Windows and macOS ignore and Linux "
                "does not)")
    problem = f"file not found: no folder {top}" if kind == "folder" else "file not found"
    found = _from_current_folder(path)
    if found:
        folder, tail = found
        cwd = os.getcwd()
        return (f"{problem}; {tail} is there from the current folder ({cwd}), but paths "
                "in a captions or labels file are read from that file's folder: from "
                f"{folder}, write {os.path.relpath(os.path.join(cwd, tail), folder)}")
    return problem


def _broken_link_problem(path):
    """"file not found: ... is a link to X, which does not exist" (or "... a
    loop of links") when `path` is a symbolic link that leads nowhere, or
    into a loop of links; else None."""
    import errno

    try:
        os.stat(path)
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"file not found: {path} is a link that leads back to itself (a loop of links)"
    if not os.path.islink(path):
        return None
    target = os.readlink(path)
    final = os.path.realpath(path)
    return (f"file not found: {path} is a link to {target}"
            + (f" ({final})" if final != os.path.join(os.path.dirname(path), target) else "")
            + ", which does not exist")


def _from_current_folder(path):
    """`(folder, tail)` where the absolute, missing `path` is `folder` + `tail`,
    `folder` exists and `tail` names a file relative to the current folder
    (a row that names its file from where the command runs, not from the
    captions file's folder: `data/images/a.jpg` in `data/captions.csv`); the
    longest such `tail`, else None. Costs a stat per folder of `path`, for
    missing files only."""
    cwd = os.getcwd()
    parts = path.split(os.sep)
    for i in range(2, len(parts)):  # `folder` is never the file system's root
        folder, tail = os.sep.join(parts[:i]), os.path.join(*parts[i:])
        found = os.path.join(cwd, tail)
        if found != path and os.path.isfile(found) and os.path.isdir(folder):
            return folder, tail
    return None


def _name_key(name):
    return unicodedata.normalize("NFC", name).casefold()


@functools.lru_cache(maxsize=8)
def _names_by_key(folder, mtime_ns):
    """{`_name_key(name)`: name} of the entries of `folder` (as it was at
    `mtime_ns`: any entry added or removed changes the key)."""
    names = {}
    for name in sorted(os.listdir(folder)):
        names.setdefault(_name_key(name), name)
    return names


def read_captions_file(path, require_label=True, on_error="raise"):
    """Reads a captions file into a list of dicts with path/caption/label/split.

    Args:
        path: str. A `.csv` or `.jsonl` file.
        require_label: bool. Whether the `label` column must be present.
        on_error: str. `"raise"` (a `DataError` naming each bad row) or `"skip"`
            (skip bad rows and warn with their list).

    Returns:
        list of dict with keys path, caption, label, split, row.
    """
    check_on_error(on_error)
    root = os.path.dirname(os.path.abspath(path))
    required = ["path", "caption"] + (["label"] if require_label else [])
    rows, problems, first, unsplit, skipped_labels = [], [], True, [], []
    for n, row in _read_rows(path, problems):
        if first:
            check_columns(path, row, required)
            first = False
        loc = f"{path}:{n}"
        caption, why = text_field(row, "caption")
        image, why = (None, why) if why else text_field(row, "path", "image path")
        label = None
        if not why and (require_label or row.get("label") not in (None, "")):
            label, why = label_field(row)
        if not why:
            split, why = split_field(row)
        if why:
            problems.append((loc, why))
            if require_label:
                skipped_labels.extend(labels_of_bad_row(row, label_field))
            continue
        if unset_split(path, row):
            unsplit.append(loc)
        rows.append({"path": row_path(root, image), "caption": caption, "label": label,
                     "split": split, "row": loc})
    if first and not problems:
        raise DataError(f"{path}: the captions file has no rows.")
    handle_problems(problems, on_error, "rows", total=len(rows) + len(problems))
    return FileRows(rows, path, unsplit, skipped_labels)


def split_field(row):
    """`(split or None, None)` of a row's optional `split` column, or
    `(None, problem)` for a value other than train / validation / test.

    The value may be in any case and have spaces around it (`" Train "` is
    `"train"`), as split folders and per-split file names may."""
    split = row.get("split")
    if split is None or (isinstance(split, str) and not split.strip()):
        return None, None
    if isinstance(split, str) and split.strip().lower() in SPLITS:
        return split.strip().lower(), None
    return None, (f"split {split!r} is not one of {', '.join(SPLITS)} (in any case)"
                  + (_split_alias_note(split) if isinstance(split, str) else ""))


def rows_with_known_labels(rows, class_names, model_classes, on_error, split=None):
    """`rows` without those whose `label` is not in `class_names`: those are
    bad rows (one `DataError` naming them, or skipped with a `DataWarning`).

    Args:
        rows: list of dict with `label` and `row` ("file:line").
        class_names: list of str.
        model_classes: bool. The classes are a trained model's (else the
            training split's), for the message.
        on_error: str. `"raise"` or `"skip"`.
        split: str or None. The split of `rows`, named in the warning or
            error (the skip warnings of each split's rows read alike).
    """
    why = ("is not one of the model's classes" if model_classes
           else "does not occur in the training split")
    if on_error == "skip" and not model_classes:
        # A class whose training rows were all bad was gone from the
        # training split, and this read as if the file had none.
        why += "'s rows that were not skipped as bad"
    known = set(class_names)
    unknown = [(r["row"], f"label {r['label']!r} {why}") for r in rows if r["label"] not in known]
    handle_problems(unknown, on_error, "rows", total=len(rows), split=split)
    bad = {loc for loc, _ in unknown}
    return [r for r in rows if r["row"] not in bad]


def warn_if_splits_overlap(where, per_split, split, field):
    """One `DataWarning` when, loading the training split, validation or test
    rows hold a file (`field="path"`: the same file, links resolved) or a text
    (`field="text"`: the same text once compared by `text_key`: Unicode
    form, case and runs of spaces aside) that a training row holds too: those rows are not held out, and their scores
    say little about unseen data. It counts them per split and names the
    first five (`file:line: same ... as training row file:line`; all in
    `.problems`).

    Only a split column or per-split files can do this (the hash split keys
    on the path or text, so copies stay together); some put training rows
    in a test split on purpose, hence a warning, not an error. Nothing
    happens unless `split` is `"train"`, so that it is said once per run.

    Args:
        where: str. The source, for the message.
        per_split: dict of split -> list of row dicts with `field` and `row`.
        split: str. The split being loaded.
        field: str. `"path"` or `"text"`.
    """
    if split != "train" or not any(per_split.get(s) for s in ("validation", "test")):
        return

    def key(row):
        value = row[field]
        # file_identity: one stat; realpath took about 40 ms of the 0.6 s
        # that bench/bench_input_pipeline.py's 1,621 images take to load.
        return file_identity(value) if field == "path" else text_key(value)

    what = "file" if field == "path" else field
    training = {}
    for row in per_split.get("train") or []:
        training.setdefault(key(row), row)

    def labels(row):
        return sorted(row["labels"]) if row.get("labels") else [row.get("label")]

    def same(row, first):
        # A copy labelled otherwise is said so: a README promise that such
        # rows are bad rows holds within a split only.
        there, here = labels(first), labels(row)
        conflict = (f", labelled {'|'.join(map(str, there))} there and "
                    f"{'|'.join(map(str, here))} here") if there != here else ""
        return f"same {what} as training row {first['row']}{conflict}"

    problems, counts = [], []
    for other in ("validation", "test"):
        rows = per_split.get(other) or []
        found = [(row["row"], same(row, training[key(row)]))
                 for row in rows if key(row) in training]
        if found:
            counts.append(f"{len(found)} of {len(rows)} {other} rows")
            problems += found
    if not problems:
        return
    import warnings

    warnings.warn(DataWarning(
        f"{where}: {' and '.join(counts)} hold the same {what} as a training row, so they "
        f"are not held out and their scores overstate how well the model does on unseen "
        f"data (give each {what} one split, or leave out the split column: the hash split "
        f"keeps copies together):\n{format_problems(problems, limit=5)}", problems),
        stacklevel=_caller_level())


TWO_CLASSES_NEEDED = "a classifier, or a Siamese, triplet or matching network, needs two or more"


def check_two_classes(source, class_names):
    """A `DataError` for a classifier whose training split has one class
    (`class_names` from it), as labels files, class folders and texts get
    from their loaders: such a model learns to say that class and scores
    nothing (an image-caption one trained, and reported an accuracy of 0.143
    beside a majority class of 1.000)."""
    if len(class_names) == 1:
        raise DataError(f"{source}: the training split has one class ({class_names[0]!r}); "
                        f"{TWO_CLASSES_NEEDED}.")


def kept_records(records, kept, warn_lost, given=False):
    """`records` reduced to the rows `kept` after a dataset's checking pass
    (the dataset's indices count kept files), with `warn_if_classes_lost`
    for their one label per row when `warn_lost` (a training split with
    labels)."""
    if len(kept) == len(records):
        return records
    records = records.subset(kept)
    if warn_lost:
        warn_if_classes_lost(records.class_names, [[label] for label in records.labels], given)
    return records


def warn_if_classes_lost(class_names, labels, given=False):
    """Warns (`DataWarning`) when a class of `class_names` has no row left in
    the training split's `labels` (one list of class names per row) once the
    rows with a bad file were skipped: the model still gets an output for it
    (the class ids were fixed when the file was read), which this data never
    trains, so the class is never predicted. Nothing for `class_names` the
    caller gave (a trained model's, for data that may lack some classes)."""
    if given:
        return
    present = {name for row in labels for name in row}
    lost = [name for name in class_names if name not in present]
    if lost:
        import warnings

        warnings.warn(DataWarning(
            f"no training row of class(es) {', '.join(map(repr, lost))} is left after "
            f"skipping the bad files; the model still has an output for "
            f"{'it' if len(lost) == 1 else 'each'} (class ids count every class of the "
            "file), which these data do not train: fix the files, or remove the class's rows"),
            stacklevel=_caller_level())


def read_split_files(files, split, read, on_error):
    """The rows of per-split files `files` (split -> path) that loading
    `split` needs: `read(path, on_error=...)` of the training file and of
    `split`'s. Loading the training split also reads the other split files,
    only for `warn_if_splits_overlap`: their bad rows are left out without a
    warning (they are reported when that split is loaded), and a file that
    cannot be read gives none."""
    import warnings

    per_split = {s: read(p, on_error=on_error) for s, p in files.items()
                 if s in ("train", split)}
    _warn_if_split_column_disagrees(files[split], split, per_split[split])
    if split != "train":
        return per_split
    for s, p in files.items():
        if s in per_split:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                per_split[s] = read(p, on_error="skip")
        except DataError:
            per_split[s] = []
    return per_split


def _warn_if_split_column_disagrees(path, split, rows):
    """One `DataWarning` when rows of the per-split file `path` of `split`
    name another split in a `split` column: the file decides, the column is
    not read (24 test.jsonl rows saying "train" were test rows without a
    word)."""
    other = [row for row in rows if row.get("split") not in (None, split)]
    if not other:
        return
    import warnings

    named = sorted({row["split"] for row in other})
    warnings.warn(DataWarning(
        f"{path}: {len(other)} of {len(rows)} rows name split "
        f"{', '.join(map(repr, named))} in their split column ({other[0]['row']}, ...); in a "
        f"per-split file every row belongs to the file's split ({split}), and the column "
        "is not read: move the rows to their file, or drop the column."),
        stacklevel=_caller_level())


def text_key(text):
    """What identifies a text for the hash split and the leakage check: in
    Unicode NFC, case-folded, runs of white space made one space. Copies
    that differ only there (an NFD "café" from macOS, a doubled space, an
    upper-cased line) give the same token ids to an uncased encoder; keyed on
    the raw strings they landed in different splits, unflagged."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def hash_split(key, seed=0):
    """train / validation / test (80/10/10) from a seeded hash of a string key.

    Stable when rows are added or reordered (each row's split depends only on
    its own key)."""
    h = int(hashlib.sha256(f"{seed}:{key}".encode("utf-8")).hexdigest()[:8], 16)
    u = h / 0xFFFFFFFF
    return "train" if u < 0.8 else ("validation" if u < 0.9 else "test")


_UNSPLIT_ROWS_IN = contextvars.ContextVar("unsplit_rows_in", default=None)


@contextlib.contextmanager
def unsplit_rows_in(split):
    """Inside the block, rows that name no split (no `split` column, no
    per-split file or split folder) belong to `split` instead of the 80/10/10
    hash split: a trained model evaluated on other data sees all of its rows.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; use one of {', '.join(SPLITS)}.")
    token = _UNSPLIT_ROWS_IN.set(split)
    try:
        yield
    finally:
        _UNSPLIT_ROWS_IN.reset(token)


def default_split(key, seed=0):
    """The split of a row that names none: `hash_split(key, seed)`, or the
    split of an enclosing `unsplit_rows_in(split)`."""
    return _UNSPLIT_ROWS_IN.get() or hash_split(key, seed)


def _hash_split(path, seed, root):
    """`default_split` of an image's path relative to `root`, the folder of the
    captions/labels file or of the class folders (moving the folder keeps the
    splits). The key was the file name alone, so that with the same names in
    every class folder (`cat/001.jpg`, `dog/001.jpg`, …) each name fell in the
    same split for all classes, and a small dataset could have no test image
    at all. The key is in Unicode NFC, so that a name with accents falls in
    the same split whichever form the file system or the captions file
    spells it in (`row_path`)."""
    key = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return default_split(unicodedata.normalize("NFC", key.replace(os.sep, "/")), seed)


# What a data file that mmtl_tf did not look for may end with.
_DATA_FILE_EXTENSIONS = (".csv", ".jsonl", ".json", ".tsv", ".txt")


def data_files_hint(folder, name):
    """For a message saying that `folder` has no data file of the names
    looked for: "; it holds FILE, ...: give ... as the source, or rename it
    `name`" when it holds files that may be one under another name
    (`metadata.csv`, `annotations.jsonl`, `captions.tsv`); else ""."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return ""
    found = [n for n in names if not n.startswith(".")
             and n.lower().endswith(_DATA_FILE_EXTENSIONS)
             and os.path.isfile(os.path.join(folder, n))]
    if not found:
        return ""
    if len(found) == 1:
        return (f"; it holds {found[0]}: give {os.path.join(folder, found[0])} as the "
                f"source, or rename it {name}")
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    return (f"; it holds {shown}: give the one with the data as the source, or rename it "
            f"{name}")


def _class_folders_hint(folder):
    """"; it holds class folders of images ..." for a folder without a
    captions file whose sub-folders hold images (data for the tasks that
    need labels only); else ""."""
    from mmtl_tf.data.image_classification import IMAGE_EXTENSIONS, _subfolders

    def holds_images(sub):
        with os.scandir(os.path.join(folder, sub)) as found:  # closed ("unclosed scandir")
            return any(e.name.lower().endswith(IMAGE_EXTENSIONS) for e in found)

    try:
        with_images = [d for d in _subfolders(folder) if holds_images(d)]
    except OSError:
        return ""
    if not with_images:
        return ""
    return (f"; it holds class folders of images ({', '.join(with_images[:3])}"
            f"{', ...' if len(with_images) > 3 else ''}): labels without captions, which "
            "head-swap, siamese and triplet read; the image-text models need a captions "
            "file with a caption per image")


def find_file(folder, names, entries=None):
    """The path of the first of `names` that is a file in `folder`, or None.

    Names match in any case (`Captions.CSV` is `captions.csv`), as the
    extension of image files does; an exact match comes first. `entries`:
    the folder's sorted listing, where the caller has it already."""
    if entries is None:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            return None
    for name in names:
        # Only the entries whose name matches are looked at (a data folder may
        # hold thousands of images).
        for entry in sorted((e for e in entries if e.lower() == name.lower()),
                            key=lambda e: e != name):
            if os.path.isfile(os.path.join(folder, entry)):
                return os.path.join(folder, entry)
    return None


# Other names of the splits that data sets use (`val.csv`, a split value
# "dev"): named in messages, never read as the split (only train, validation
# and test are, as for split folders).
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation",
                 "training": "train", "testing": "test"}


def _split_alias_note(name):
    """ "; write validation for val" where `name` (a split value or a file
    name's stem, any case) is another name of a split; else ""."""
    split = SPLIT_ALIASES.get(name.strip().lower())
    return f"; write {split} for {name.strip()}" if split else ""


def _split_renames(names, missing):
    """{name: "val.csv to validation.csv"} for each of the file `names`
    (.csv or .jsonl) named as another name of a split of `missing`."""
    return {name: f"{name} to {SPLIT_ALIASES[stem.lower()]}{ext.lower()}"
            for name in names for stem, ext in [os.path.splitext(name)]
            if ext.lower() in (".csv", ".jsonl") and SPLIT_ALIASES.get(stem.lower()) in missing}


def missing_split_files_problem(folder, files, needed):
    """The message for a folder of per-split files `files` (split -> path)
    without a file for each split of `needed`: names the missing splits and
    a file named as another name of one (`val.csv`: rename it)."""
    missing = [s for s in dict.fromkeys(needed) if s not in files]
    names = sorted(os.path.basename(p) for p in files.values())
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        entries = []
    renames = [rename for name, rename in _split_renames(entries, missing).items()
               if os.path.isfile(os.path.join(folder, name))]
    return (f"{folder}: has per-split files ({', '.join(names)}) but no "
            f"{' or '.join(missing)} file (.jsonl or .csv)"
            + (f"; rename {', '.join(renames)} (split files are named train, validation and "
               "test)" if renames else "") + ".")


def per_split_files(folder):
    """{split: path} of the `train` / `validation` / `test` `.jsonl` or `.csv`
    files in a folder (`.jsonl` first; names in any case)."""
    try:
        entries = sorted(os.listdir(folder))  # once for the three splits
    except OSError:
        return {}
    found = {}
    for split in SPLITS:
        path = find_file(folder, (split + ".jsonl", split + ".csv"), entries)
        if path:
            found[split] = path
    return found


def warn_if_other_data_files(folder, used, singles):
    """Warns (`DataWarning`) when `folder` holds data files that are not read
    beside the files `used` that were chosen from it: `NAME.csv` beside a
    `NAME.jsonl` that is read (`.jsonl` comes first), or a single file of
    `singles` (`captions.csv`, ...) beside per-split files (these come
    first). A captions file edited while an older one of the other kind sat
    beside it was left unread without a word."""
    names = [os.path.basename(path) for path in used]
    wanted = [stem + (".csv" if ext.lower() == ".jsonl" else ".jsonl")
              for stem, ext in map(os.path.splitext, names)]
    if any(os.path.splitext(name)[0].lower() in SPLITS for name in names):
        wanted += singles
        # val.csv beside train.csv: not read as the validation split.
        wanted += [alias + ext for alias in SPLIT_ALIASES for ext in (".jsonl", ".csv")]
    # The folder (which may hold every image) is listed once for all names.
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return
    ignored = list(dict.fromkeys(
        os.path.basename(path) for path in (find_file(folder, (want,), entries)
                                            for want in wanted)
        if path and os.path.basename(path) not in names))
    if not ignored:
        return
    import warnings

    # val.csv where no validation file is read: rename it (beside one: as
    # any other file left unread).
    read_splits = {os.path.splitext(name)[0].lower() for name in names}
    renames = _split_renames(ignored, [s for s in SPLITS if s not in read_splits])
    others = [name for name in ignored if name not in renames]
    told = []
    if renames:
        told.append(f"{', '.join(renames)} {'is' if len(renames) == 1 else 'are'} not read: "
                    f"split files are named train, validation and test; rename "
                    f"{', '.join(renames.values())}")
    if others:
        told.append(
            f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} not read: "
            f"the data come from {', '.join(names)} (a .jsonl file comes before the .csv of "
            "the same name, and per-split files before one file for all splits); remove or "
            "rename the file you do not mean, or give the file itself as the source")
    warnings.warn(DataWarning(f"{folder}: {'; '.join(told)}"), stacklevel=_caller_level())


def empty_split_error(where, split, per_split):
    """The `DataError` for a split without rows: how many rows each split got
    and, when some were assigned by the hash split, how to assign them."""
    counts = ", ".join(f"{s} {len(per_split.get(s, []))}" for s in SPLITS)
    hashed = any(not row.get("split") for rows in per_split.values() for row in rows)
    how = (" Rows without a split are assigned 80/10/10 by a hash of each row's file path "
           "(of its text, for text data); with this "
           "few rows, assign them yourself: a 'split' column (train, validation, test), "
           "per-split files (train.csv, ...) or, for class folders, train/validation/test "
           "folders." if hashed else "")
    return DataError(f"{where}: the {split!r} split has no rows (rows per split: "
                     f"{counts}).{how}")


def load_image_text_records(source="default", split="train", require_label=True,
                            seed=0, on_error="raise", class_names=None):
    """Loads one split of an image-caption source.

    Args:
        source: str. `"default"` (the bundled emoji sample), a folder or a
            captions file (see the module docstring).
        split: str. `"train"`, `"validation"` or `"test"`.
        require_label: bool. Labels are needed for classification.
        seed: int. Seed of the hash split when the source has no split column.
        on_error: str. `"raise"` or `"skip"` for bad rows.
        class_names: list of str or None. The classes that label ids index:
            by default the sorted labels of the source's training split; a
            trained model evaluated on other data passes its own, so that ids
            mean the same classes (rows with other labels are bad rows).

    Returns:
        `ImageTextRecords`.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; use one of {', '.join(SPLITS)}.")
    kind, path = resolve_source(source)
    if kind == "tfds":
        raise DataError(
            f"tfds:{path}: TFDS sources are loaded with mmtl_tf.data.load_tfds_* "
            "functions, not as captions files.")
    split_files = per_split_files(path) if kind == "dir" else {}
    whole = None  # the rows of the one captions file, where there is one
    if split_files:
        if "train" not in split_files or split not in split_files:
            raise DataError(missing_split_files_problem(path, split_files, ["train", split]))
        per_split = read_split_files(split_files, split, functools.partial(
            read_captions_file, require_label=require_label), on_error)
        if split == "train":
            warn_if_other_data_files(path, split_files.values(), CAPTION_FILE_NAMES)
    else:
        if kind == "dir":
            file = find_file(path, CAPTION_FILE_NAMES)
            if file is None:
                raise DataError(
                    f"{path}: no captions file (looked for {', '.join(CAPTION_FILE_NAMES)} "
                    "or train/validation/test .jsonl/.csv)"
                    + (data_files_hint(path, "captions.csv") or _class_folders_hint(path))
                    + ".")
            if split == "train":
                warn_if_other_data_files(path, [file], CAPTION_FILE_NAMES)
        else:
            file = path
        rows = whole = read_captions_file(file, require_label, on_error)
        warn_if_partly_split(rows)
        per_split = {s: [] for s in SPLITS}
        for r in rows:
            per_split[r["split"] or _hash_split(r["path"], seed, os.path.dirname(
                os.path.abspath(file)))].append(r)
    warn_if_splits_overlap(path, per_split, split, "path")
    given = class_names is not None
    class_names = given_class_names(class_names) if given else sorted_class_names(
        r["label"] for r in per_split["train"] if r["label"] is not None)
    if not given and require_label and split == "train":
        warn_if_classes_skipped(path, skipped_training_labels(whole, per_split), class_names)
    chosen = per_split[split]
    if not chosen:
        raise empty_split_error(path, split, per_split)
    if require_label:
        chosen = rows_with_known_labels(chosen, class_names, given, on_error, split)
    root = path if kind == "dir" else os.path.dirname(os.path.abspath(path))
    return ImageTextRecords(
        paths=[r["path"] for r in chosen],
        captions=[r["caption"] for r in chosen],
        labels=[r["label"] for r in chosen],
        rows=[r["row"] for r in chosen],
        class_names=class_names, root=root)
