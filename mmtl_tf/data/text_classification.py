"""Text-classification data: (text, label) rows from the bundled fortunes
subset, local files, or TFDS (`imdb_reviews`, `ag_news_subset`), and the
`tf.data` pipeline that feeds them to a model.

A text-classification file is JSON Lines or CSV (with a header) with the columns
`text` and `label`, and optionally `split` (`train` / `validation` / `test`).
A folder holds one file per split (`train.jsonl`, `validation.jsonl`,
`test.jsonl`, or `.csv`) or a single `texts.jsonl` / `texts.csv`. Without a
split column, rows are split 80 / 10 / 10 by a seeded hash of the text, which
stays stable when rows are added or reordered.

`"default"` is the bundled subset of Debian's fortunes (BSD; see
`default_text/LICENSE.md`): 1,360 quotes of at most 300 characters in 8
categories (computers, science, politics, work, food, sports, love, law),
split 884 / 203 / 273 with a seed. `data_prep/build_fortunes.py` rebuilds it
and builds the full corpus (3,383 quotes).
"""

import dataclasses
import os

import numpy as np

from mmtl_tf.data.sources import (check_columns, check_two_classes, data_files_hint, default_split,
                                  empty_split_error, FileRows, find_file, given_class_names,
                                  label_field, labels_of_bad_row, missing_split_files_problem,
                                  per_split_files, _read_rows, read_split_files,
                                  rows_with_known_labels, skipped_training_labels,
                                  sorted_class_names, split_field, SPLITS, text_field, text_key,
                                  unset_split, warn_if_classes_skipped, warn_if_other_data_files,
                                  warn_if_partly_split, warn_if_splits_overlap)
from mmtl_tf.data.tfds_access import check_download_reachable, tfds_temp_folder
from mmtl_tf.errors import (DataError, DownloadError, check_choice, check_count,
                            check_on_error, handle_problems)
from mmtl_tf.files import user_path

DEFAULT_TEXT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_text")
TEXT_FILE_NAMES = ("texts.jsonl", "texts.csv")
REQUIRED_COLUMNS = ("text", "label")

# TFDS datasets for users with internet: name → (text keys joined, label key,
# validation carved from the end of train).
TFDS_TEXT_DATASETS = {
    "imdb_reviews": {"text": ("text",), "label": "label"},
    "ag_news_subset": {"text": ("title", "description"), "label": "label"},
}


@dataclasses.dataclass
class TextClassificationRecords:
    """Rows of one split of a text-classification source.

    Attributes:
        texts: list of str.
        labels: list of str. Class names as written in the source.
        rows: list of str. "file:line" of each row, for error messages.
        class_names: list of str. Sorted labels of the *training* split
            (numerically if all are integers: `sorted_class_names`).
        source: str. Where the rows came from.
    """

    texts: list
    labels: list
    rows: list
    class_names: list
    source: str = ""

    def __len__(self):
        return len(self.texts)

    def label_ids(self):
        """Labels as an int32 NumPy array indexing `class_names` (Keras' `fit`
        takes it beside NumPy inputs; it refuses a list there)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.asarray([index[label] for label in self.labels], np.int32)

    def subset(self, keep):
        """A copy with only the rows whose positions are in `keep` (sorted)."""
        keep = sorted(keep)
        return dataclasses.replace(
            self, texts=[self.texts[i] for i in keep], labels=[self.labels[i] for i in keep],
            rows=[self.rows[i] for i in keep])


def read_text_classification_file(path, on_error="raise"):
    """Reads a JSONL or CSV file of `text`, `label` (and `split`) rows.

    Bad rows (an empty or whitespace-only text, an empty label, an unknown
    split, a JSONL line that is not valid UTF-8 or not a JSON object) raise
    one `DataError` listing each as `file:line: problem`, or are skipped with
    a `DataWarning` under `on_error="skip"`. A CSV file that is not valid UTF-8
    always raises (its rows cannot be told apart).

    Args:
        path: str. A `.jsonl` or `.csv` file.
        on_error: str. `"raise"` or `"skip"`.

    Returns:
        list of dict with keys text, label, split (or None), row.
    """
    check_on_error(on_error)
    problems, rows, first, unsplit, skipped_labels = [], [], True, [], []
    for n, row in _read_rows(path, problems):
        loc = f"{path}:{n}"
        if first:
            # Named by the file, as captions and labels files are (it named
            # the first data row, line 2 of a CSV, whose header lacks them).
            check_columns(path, row, REQUIRED_COLUMNS)
            first = False
        text, why = text_field(row, "text")
        label, why = (None, why) if why else label_field(row)
        split, why = (None, why) if why else split_field(row)
        if why:
            problems.append((loc, why))
            skipped_labels.extend(labels_of_bad_row(row, label_field))
            continue
        if unset_split(path, row):
            unsplit.append(loc)
        rows.append({"text": text, "label": label, "split": split, "row": loc})
    if first and not problems:
        raise DataError(f"{path}: the file has no rows.")
    handle_problems(problems, on_error, "rows", total=len(rows) + len(problems))
    return FileRows(rows, path, unsplit, skipped_labels)


def load_text_classification_records(source="default", split="train", seed=0,
                                     on_error="raise", max_examples=None, class_names=None,
                                     split_key="text"):
    """Loads one split of a text-classification source.

    Args:
        source: str. `"default"` (the bundled fortunes subset), a folder or a
            file (see the module docstring), or `"tfds:imdb_reviews"` /
            `"tfds:ag_news_subset"` (downloaded by TFDS: needs internet; see
            `load_tfds_text_classification`).
        split: str. `"train"`, `"validation"` or `"test"`.
        seed: int. Seed of the hash split when rows have no split.
        on_error: str. `"raise"` (a `DataError` naming each bad row) or
            `"skip"` (skip them, warn with their list).
        max_examples: int or None. For TFDS sources: read at most this many.
        class_names: list of str or None. The classes that label ids index:
            by default the sorted labels of the training split; a trained
            model evaluated on other data passes its own (rows with other
            labels are bad rows). TFDS sources keep their own class names.
        split_key: str. What the hash split keys rows without a split on:
            `"text"` (`sources.text_key`: Unicode form, case and runs of
            spaces aside, so that such copies share a split) or `"raw"` (the
            stripped text as read: the key before 2026-11-29, with which
            older runs were split; their evaluation uses it).

    Returns:
        `TextClassificationRecords`.

    Example:
        >>> import mmtl_tf
        >>> test = mmtl_tf.data.load_text_classification_records("default", "test")
        >>> len(test), len(test.class_names)
        (273, 8)
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; use one of {', '.join(SPLITS)}.")
    check_on_error(on_error)
    check_choice("split_key", split_key, ("text", "raw"))
    source = DEFAULT_TEXT_DIR if source in (None, "default") else user_path(source)
    if source.startswith("tfds:"):
        return load_tfds_text_classification(source[5:], split, max_examples=max_examples)
    given = class_names is not None
    whole = None  # the rows of the one file, where there is one (not per-split files)
    if os.path.isdir(source):
        files = per_split_files(source)
        if files:
            # With the model's class names, only the split asked for is needed
            # (e.g. a folder holding only test.csv to evaluate a run on).
            needed = [split] if given else ["train", split]
            if any(s not in files for s in needed):
                raise DataError(missing_split_files_problem(source, files, needed))
            per_split = read_split_files(files, split, read_text_classification_file,
                                         on_error)
            used = files.values()
        else:
            file = find_file(source, TEXT_FILE_NAMES)
            if file is None:
                hint = (_documents_hint(source)
                        or data_files_hint(source, TEXT_FILE_NAMES[-1]))
                raise DataError(f"{source}: no text-classification file (looked for "
                                f"{', '.join(TEXT_FILE_NAMES)} and train/validation/test "
                                f".jsonl/.csv){hint}.")
            whole = read_text_classification_file(file, on_error)
            per_split = _by_split(whole, seed, split_key)
            used = [file]
        if split == "train":
            warn_if_other_data_files(source, used, TEXT_FILE_NAMES)
    elif os.path.isfile(source):
        whole = read_text_classification_file(source, on_error)
        per_split = _by_split(whole, seed, split_key)
    else:
        raise DataError(f"{source}: no such folder or file (expected 'default', a folder, "
                        "a .jsonl/.csv file or 'tfds:NAME').")
    warn_if_splits_overlap(source, per_split, split, "text")
    class_names = given_class_names(class_names) if given else sorted_class_names(
        r["label"] for r in per_split.get("train", []))
    if not given:
        check_two_classes(source, class_names)
        if split == "train":
            warn_if_classes_skipped(source, skipped_training_labels(whole, per_split),
                                    class_names)
    chosen = per_split.get(split, [])
    if not chosen:
        raise empty_split_error(source, split, per_split)
    chosen = rows_with_known_labels(chosen, class_names, given, on_error, split)
    return TextClassificationRecords(
        texts=[r["text"] for r in chosen], labels=[r["label"] for r in chosen],
        rows=[r["row"] for r in chosen], class_names=class_names, source=source)


def _documents_hint(folder):
    """"; it holds ..." for a folder of one `.txt` file per document, flat or
    in one folder per class (the layout of Keras' `text_dataset_from_directory`
    and of aclImdb), which is not read; else "". The general hint said to
    rename one such file to a CSV."""
    def texts(path):
        try:
            return [e for e in os.scandir(path) if e.is_file() and
                    e.name.lower().endswith(".txt") and not e.name.startswith(".")]
        except OSError:
            return []

    try:
        classes = sorted(e.name for e in os.scandir(folder) if e.is_dir()
                         and not e.name.startswith(".") and texts(e.path))
    except OSError:
        return ""
    how = ("mmtl_tf reads one CSV or JSONL file of text,label rows (optionally split), not "
           "a file per document: write them into one, e.g. texts.csv")
    if classes:
        shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
        return (f"; it holds {len(classes)} folder(s) of .txt files ({shown}), one file per "
                f"document: {how}, with each file's folder as its label")
    flat = texts(folder)
    if len(flat) > 1:
        return f"; it holds {len(flat)} .txt files, one per document?: {how}"
    return ""


def _by_split(rows, seed, split_key="text"):
    """The rows of one file by split: their own, or by the hash rule."""
    warn_if_partly_split(rows)
    per_split = {s: [] for s in SPLITS}
    key = text_key if split_key == "text" else (lambda text: text)
    for r in rows:
        per_split[r["split"] or default_split(key(r["text"]), seed)].append(r)
    return per_split


def load_tfds_text_classification(name, split="train", data_dir=None, max_examples=None,
                                  validation_fraction=0.1):
    """Loads `imdb_reviews` or `ag_news_subset` from TensorFlow Datasets.

    Needs internet on first use (TFDS downloads and prepares the data into
    `data_dir`). Neither dataset has a validation split: the last
    `validation_fraction` of TFDS' train split is used as validation and the
    rest as train; `test` is TFDS' test split. `ag_news_subset` texts are the
    title and the description joined by ". ".

    Args:
        name: str. `"imdb_reviews"` or `"ag_news_subset"`.
        split: str. `"train"`, `"validation"` or `"test"`.
        data_dir: str or None. TFDS data folder.
        max_examples: int or None. Read at most this many rows.
        validation_fraction: float. Share of TFDS' train split used as validation.

    Returns:
        `TextClassificationRecords` (class names from the TFDS label feature).

    Raises:
        RuntimeError: the download failed (no internet); the message says so.

    Example:
        >>> import mmtl_tf
        >>> imdb = mmtl_tf.data.load_tfds_text_classification(
        ...     "imdb_reviews", "test", max_examples=1000)  # doctest: +SKIP

    References:
        Maas et al., "Learning Word Vectors for Sentiment Analysis", ACL 2011
        (IMDB); Zhang et al., "Character-level Convolutional Networks for Text
        Classification", NeurIPS 2015 (AG News).
    """
    if name not in TFDS_TEXT_DATASETS:
        raise ValueError(f"TFDS dataset {name!r} is not supported; use one of "
                         f"{', '.join(map(repr, TFDS_TEXT_DATASETS))}.")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; use one of {', '.join(SPLITS)}.")
    import tensorflow_datasets as tfds

    keep = round(100 * (1 - validation_fraction))
    tfds_split = {"train": f"train[:{keep}%]", "validation": f"train[{keep}%:]",
                  "test": "test"}[split]
    spec = TFDS_TEXT_DATASETS[name]
    try:
        check_download_reachable(name, data_dir)
        with tfds_temp_folder():
            ds, info = tfds.load(name, split=tfds_split, data_dir=data_dir, with_info=True)
    except Exception as e:  # download/preparation errors come in many types
        raise DownloadError(
            f"could not load TFDS dataset {name!r} ({type(e).__name__}: {e}). TFDS "
            "downloads it on first use and needs internet; offline, use the bundled "
            "'default' fortunes data or a local .jsonl/.csv file.") from e
    class_names = list(info.features[spec["label"]].names)
    if max_examples:
        ds = ds.take(int(max_examples))
    texts, labels = [], []
    for example in tfds.as_numpy(ds):
        parts = [example[k].decode("utf-8", errors="replace").strip() for k in spec["text"]]
        texts.append(". ".join(p for p in parts if p))
        labels.append(class_names[int(example[spec["label"]])])
    return TextClassificationRecords(
        texts=texts, labels=labels, rows=[f"tfds:{name}/{tfds_split}#{i}" for i in range(len(texts))],
        class_names=class_names, source=f"tfds:{name}")


def make_text_classification_dataset(records, preprocessor=None, batch_size=32, shuffle=None,
                                     seed=0, with_labels=True, split=None, cache=True,
                                     on_error="raise"):
    """Builds a batched, prefetched `tf.data.Dataset` of (inputs, label).

    Texts are preprocessed once (in batches of 256, in the graph) and the
    results cached, then shuffled, batched and prefetched.

    Args:
        records: `TextClassificationRecords`, or a source accepted by
            `load_text_classification_records` (then `split` is required).
        preprocessor: callable or None. Maps a tf.string batch (B,) to model
            inputs: a `BertPreprocessor` (→ `{"token_ids", "padding_mask"}`),
            a Keras `TextVectorization` (→ int32 ids), or None (raw strings).
        batch_size: int.
        shuffle: bool or None. None shuffles the training split only (records
            loaded here, or `split="train"`).
        seed: int. Shuffle seed.
        with_labels: bool. Yield `(inputs, label)` (else only `inputs`).
        split: str or None. The split to load when `records` is a source.
        cache: bool. Cache the preprocessed rows in memory.
        on_error: str. `"raise"` or `"skip"` for bad rows, when `records` is a
            source loaded here.

    Returns:
        A `tf.data.Dataset`; labels are int32 ids into `records.class_names`.
        Its `class_names` attribute is that list (so `mmtl_tf.training.fit`
        refuses a classifier with fewer outputs than the data has classes)
        and `records` the records it yields.

    Example:
        >>> import mmtl_tf
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a"]
        >>> ds = mmtl_tf.data.make_text_classification_dataset(
        ...     "default", mmtl_tf.data.BertPreprocessor(vocab, 32), split="test")
        >>> x, y = next(iter(ds))
        >>> x["token_ids"].shape
        TensorShape([32, 32])
    """
    import tensorflow as tf

    batch_size = check_count("batch_size", batch_size)
    if not isinstance(records, TextClassificationRecords):
        if split is None:
            raise ValueError("pass split= when records is a source name or path.")
        records = load_text_classification_records(records, split, seed=seed,
                                                   on_error=on_error)
    if len(records) == 0:
        raise DataError(f"{records.source}: no rows to make a dataset from.")
    if shuffle is None:
        shuffle = split == "train" if split is not None else False
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(records.texts, dtype=tf.string))
    if preprocessor is not None:
        def apply(texts):
            out = preprocessor(texts)
            if isinstance(out, dict):
                return {k: tf.cast(v, tf.int32) for k, v in out.items()}
            return tf.cast(out, tf.int32)

        ds = ds.batch(256).map(apply, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if with_labels:
        labels = tf.data.Dataset.from_tensor_slices(
            tf.constant(records.label_ids(), dtype=tf.int32))
        ds = tf.data.Dataset.zip((ds, labels))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    # As the image datasets: fit's class-count check reads it (a one-output
    # model trained on 4 classes without an error; 3 outputs failed inside
    # the graph on "label value of 3 ... outside the valid range").
    ds.class_names = list(records.class_names)
    ds.records = records
    return ds
