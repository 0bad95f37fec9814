"""Image-classification data: (uint8 image, target) pipelines for the head-swap models.

Targets per task:

* `"multiclass"`: the class id (int32).
* `"multilabel"`: a multi-hot float32 vector, one entry per class (which
  object classes occur in the image, as in Pascal VOC classification).
* `"localization"`: `{"class": int32, "box": float32 [ymin, xmin, ymax, xmax]}`
  (normalised image coordinates, the TFDS convention) of the image's main object.

Sources:

* `"default"`: the bundled emoji sample (9 categories; captions are ignored).
* a **labels file**, CSV (with a header) or JSON Lines, one row per image (rows
  repeating an image and its label are one row; `"multilabel"` merges an
  image's rows; for the other tasks an image with two labels or boxes is a
  bad row), with
  the columns `path` (relative to the file) and `label`, optionally `split`
  (`train` / `validation` / `test`) and `box` (`"ymin xmin ymax xmax"`,
  normalised, for localization). For multi-label data the `label` cell holds
  the classes separated by `|` (`"dog|person"`). A captions file of
  `mmtl_tf.data.sources` is a labels file too.
* a **folder** holding such a file (`labels.jsonl`, `labels.csv`,
  `captions.jsonl`, `captions.csv`, or one file per split; names in any
  case), or laid out as one sub-folder per class (`root/<class>/*.jpg`, images
  in deeper sub-folders belong to the class; optionally below `root/train/`,
  `root/validation/`, `root/test/`). Hidden files and folders (`._NAME.jpg`
  beside each image of a folder copied from a Mac, `.ipynb_checkpoints/`) and
  `__MACOSX/` are not read.
* **TFDS** (`load_tfds_image_dataset`): `tf_flowers`, `cats_vs_dogs`,
  `voc/2007` — for users with internet; the examples go through the same
  target and image functions (`tfds_targets`, `multi_hot`, `largest_object`).

Without a split column (or split folders), rows are split 80 / 10 / 10 by a
seeded hash of the image's path relative to the labels file's folder (class
folders: relative to the folder holding them, e.g. `cat/001.jpg`). Bad input raises `mmtl_tf.DataError` naming the
file or row; `on_error="skip"` skips it and warns.
"""

import dataclasses
import os
import re
import warnings

import numpy as np
import tensorflow as tf

from mmtl_tf.data.file_dataset import cache_file
from mmtl_tf.data.image import (UNDECODABLE_IMAGE_EXTENSIONS, augment_image,
                                decoded_image_dataset, resize_and_crop)
from mmtl_tf.data.sources import (CAPTION_FILE_NAMES, DEFAULT_SAMPLE_DIR, SPLITS, _hash_split,
                                  _read_rows, check_columns, check_two_classes, class_name,
                                  data_files_hint, empty_split_error, given_class_names, find_file, label_field,
                                  LIST_AS_TEXT,
                                  labels_of_bad_row, warn_if_classes_skipped,
                                  missing_split_files_problem, per_split_files, row_path,
                                  sorted_class_names, split_field, text_field,
                                  FileRows, unset_split, warn_if_partly_split,
                                  TWO_CLASSES_NEEDED, warn_if_classes_lost,
                                  warn_if_other_data_files, warn_if_splits_overlap)
from mmtl_tf.data.tfds_access import check_download_reachable, tfds_temp_folder
from mmtl_tf.errors import (DataError, DataWarning, DownloadError, _caller_level,
                            augment_for_split, check_choice, check_count, check_on_error,
                            handle_problems, loading_split)
from mmtl_tf.files import _listed, file_identity, user_path

TASKS = ("multiclass", "multilabel", "localization")
LABEL_FILE_NAMES = ("labels.jsonl", "labels.csv") + CAPTION_FILE_NAMES
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
LABEL_SEPARATOR = "|"

# TFDS image datasets for users with internet: name → label layout and splits.
_PERCENT_SPLITS = {"train": "train[:80%]", "validation": "train[80%:90%]", "test": "train[90%:]"}
TFDS_IMAGE_DATASETS = {
    "tf_flowers": {"kind": "label", "splits": _PERCENT_SPLITS,
                   "tasks": ("multiclass",)},
    "cats_vs_dogs": {"kind": "label", "splits": _PERCENT_SPLITS,
                     "tasks": ("multiclass",)},
    "voc/2007": {"kind": "objects", "splits": {s: s for s in SPLITS},
                 "tasks": ("multiclass", "multilabel", "localization")},
}


@dataclasses.dataclass
class ImageLabelRecords:
    """Rows of one split of an image-classification source.

    Attributes:
        paths: list of str. Absolute image paths.
        labels: list of list of str. The classes of each image (one for
            single-label data; for localization the first is the boxed object).
        boxes: list of 4-tuples or None. `[ymin, xmin, ymax, xmax]`, normalised.
        rows: list of str. "file:line" (or the path) of each row, for messages
            (`"a.csv:2, a.csv:5"` when rows naming one image were folded).
        class_names: list of str. Sorted classes of the *training* split.
    """

    paths: list
    labels: list
    boxes: list
    rows: list
    class_names: list

    def __len__(self):
        return len(self.paths)

    def subset(self, keep):
        keep = sorted(keep)
        return dataclasses.replace(
            self, paths=[self.paths[i] for i in keep], labels=[self.labels[i] for i in keep],
            boxes=None if self.boxes is None else [self.boxes[i] for i in keep],
            rows=[self.rows[i] for i in keep])

    def label_ids(self):
        """The (first) class of each row, as an int32 NumPy array indexing
        `class_names`."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.asarray([index[labels[0]] for labels in self.labels], np.int32)

    def targets(self, task):
        """NumPy targets for `task` (see the module docstring)."""
        check_choice("task", task, TASKS)
        ids = self.label_ids()
        if task == "multiclass":
            return ids
        if task == "multilabel":
            index = {name: i for i, name in enumerate(self.class_names)}
            hot = np.zeros((len(self), len(self.class_names)), np.float32)
            for row, labels in enumerate(self.labels):
                hot[row, [index[label] for label in labels]] = 1.0
            return hot
        if self.boxes is None:
            raise DataError("task='localization' needs a 'box' column; this source has none.")
        return {"class": ids, "box": np.asarray(self.boxes, np.float32)}


# A number written with a decimal comma ("0,25", ",5").
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+")
# How several labels of one image are written, for the messages.
_SEVERAL_LABELS = (f"several labels of one image are written 'a{LABEL_SEPARATOR}b' (or as a "
                   "JSON list in a .jsonl file)")


def _parse_box(value):
    if value is None or (isinstance(value, str) and not value.strip()):
        # A JSON Lines row without "box", or an empty CSV cell: it said
        # "expected 4 numbers".
        raise ValueError("no box (localization needs one per row: 4 numbers ymin xmin "
                         "ymax xmax, normalised to [0, 1])")
    if isinstance(value, str):
        parts = value.split()
        if not (len(parts) == 4 and all(_DECIMAL_COMMA.fullmatch(p) for p in parts)):
            parts = value.replace(",", " ").split()
        else:
            # Four numbers with decimal commas, as a spreadsheet writes them
            # where the comma is the decimal mark (a semicolon CSV): they read
            # as 8 numbers.
            parts = [p.replace(",", ".") for p in parts]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
        if any(isinstance(p, bool) for p in parts):  # (JSON true / false are ints to float())
            raise ValueError(f"box {value!r} holds true/false, not 4 numbers")
    else:
        raise ValueError(f"box {value!r} is not 4 numbers (ymin xmin ymax xmax)")
    try:
        box = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"box {value!r} is not 4 numbers") from None
    if len(box) != 4:
        decimal_commas = isinstance(value, str) and all(
            _DECIMAL_COMMA.fullmatch(p) for p in value.split())
        raise ValueError(f"box {value!r} has {len(box)} numbers, not 4 (ymin xmin ymax xmax)"
                         + ("; read with its commas as separators: numbers with decimal "
                            "commas are read as such when there are 4 of them, separated by "
                            "spaces" if decimal_commas else ""))
    ymin, xmin, ymax, xmax = box
    if not (0.0 <= ymin < ymax <= 1.0 and 0.0 <= xmin < xmax <= 1.0):
        raise ValueError(f"box {value!r} is not 0 <= ymin < ymax <= 1 and 0 <= xmin < xmax <= 1")
    return tuple(box)


def read_labels_file(path, need_box=False, on_error="raise"):
    """Reads a labels file (CSV or JSONL) into dicts with path/labels/box/split/row.

    Args:
        path: str. A `.csv` or `.jsonl` file with `path` and `label` columns
            (optionally `split`, `box`).
        need_box: bool. Whether the `box` column must be present (localization).
        on_error: str. `"raise"` or `"skip"` for bad rows.
    """
    check_on_error(on_error)
    root = os.path.dirname(os.path.abspath(path))
    required = ["path", "label"] + (["box"] if need_box else [])
    rows, problems, first, unsplit, skipped_labels = [], [], True, [], []
    for n, row in _read_rows(path, problems):
        if first:
            check_columns(path, row, required)
            first = False
        loc = f"{path}:{n}"
        image, why = text_field(row, "path", "image path")
        labels, why = (None, why) if why else _labels_field(row)
        split, why = (None, why) if why else split_field(row)
        box = None
        if need_box and not why:
            try:
                box = _parse_box(row.get("box"))
            except ValueError as e:
                why = str(e)
        if why:
            problems.append((loc, why))
            skipped_labels.extend(labels_of_bad_row(row, _labels_field))
            continue
        if unset_split(path, row):
            unsplit.append(loc)
        rows.append({"path": row_path(root, image), "labels": labels, "box": box,
                     "split": split, "row": loc})
    if first and not problems:
        raise DataError(f"{path}: the labels file has no rows.")
    handle_problems(problems, on_error, "rows", total=len(rows) + len(problems))
    return FileRows(rows, path, unsplit, skipped_labels)


def _warn_if_comma_joined(where, rows, class_names):
    """A `DataWarning` for class names that are other classes joined by
    commas ("red,green" beside "red" and "green"): several labels of one
    image written with commas, which made one more class of each
    combination. A name with a comma whose parts are not all classes
    ("Smileys, people") is left alone."""
    known = set(class_names)
    joined = {}
    for name in class_names:
        parts = [p.strip() for p in name.split(",")]
        if len(parts) > 1 and all(p in known for p in parts):
            joined[name] = next(r["row"] for r in rows if name in r["labels"])
    if joined:
        import warnings

        listed = "; ".join(f"{name!r} ({row})" for name, row in list(joined.items())[:5])
        more = f" and {len(joined) - 5} more" if len(joined) > 5 else ""
        warnings.warn(DataWarning(
            f"{where}: class(es) {listed}{more} are other classes joined by commas, so each "
            f"combination is a class of its own; {_SEVERAL_LABELS}"),
            stacklevel=_caller_level())


def _labels_field(row):
    """`(labels, None)`: a row's class names (a list, or one string with
    `LABEL_SEPARATOR` between names), or `(None, problem)`."""
    value = row.get("label")
    items = value if isinstance(value, list) else [value]
    labels = []
    for item in items:
        label, why = label_field({"label": item})
        if why and why.endswith(LIST_AS_TEXT):
            return None, f"{why}; {_SEVERAL_LABELS}"
        if why == "empty label" and isinstance(value, list) and value:
            # ["red", ""] was read as ["red"], where "red|" is a bad row.
            return None, f"label list {value!r} holds an empty class name"
        if why:
            return None, why
        if label:
            parts = [x.strip() for x in label.split(LABEL_SEPARATOR)]
            if len(parts) > 1 and not all(parts):
                # "circle||square" and "circle|" were read as two and one
                # labels without a word: usually a name left out.
                return None, (f"label {label!r} has an empty class name between or beside its "
                              f"{LABEL_SEPARATOR!r} separators")
            labels += [x for x in parts if x]
    return (labels, None) if labels else (None, "empty label")


def _is_data(name):
    """Whether an entry of a class-folder tree may hold data: not hidden
    (`.ipynb_checkpoints`, `.git`, and the `._NAME` AppleDouble file that
    macOS writes beside each file on volumes without Mac metadata) and not
    the `__MACOSX` folder of a zip made by Finder, which holds those."""
    return not name.startswith(".") and name != "__MACOSX"


def _image_files(folder, undecodable=None):
    """The image files below `folder`, at any depth, in sorted order, hidden
    files and folders left out (`_is_data`). Files of image formats that
    TensorFlow cannot decode (`UNDECODABLE_IMAGE_EXTENSIONS`: an iPhone's
    HEIC photos, TIFF scans) are added to the list `undecodable`, if given.

    Links to directories are followed, but each directory is walked once: a
    `latest -> .` link inside a class folder made a loop that `os.walk`
    followed until the path was too long, listing every image dozens of
    times under `again/again/...` paths (which the hash split then spread
    over all three splits: 30 files made 630 rows, 62 of them test rows of
    16 files, copies of training images among them)."""
    found, walked = [], {file_identity(folder)}
    for base, dirs, files in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(filter(_is_data, dirs)):
            key = file_identity(os.path.join(base, name))
            if key not in walked:
                walked.add(key)
                kept.append(name)
        dirs[:] = kept
        files = sorted(filter(_is_data, files))
        found += [os.path.join(base, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        if undecodable is not None:
            undecodable += [os.path.join(base, f) for f in files
                            if f.lower().endswith(UNDECODABLE_IMAGE_EXTENSIONS)]
    return found


def _undecodable_note(paths):
    """"12 file(s) in image formats that TensorFlow cannot decode (.heic 11,
    .tif 1: a/IMG_1.HEIC, ...); convert them to JPEG or PNG to use them"."""
    counts = {}
    for path in paths:
        ext = os.path.splitext(path)[1].lower()
        counts[ext] = counts.get(ext, 0) + 1
    kinds = ", ".join(f"{ext} {n}" for ext, n in sorted(counts.items(), key=lambda x: -x[1]))
    shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
    return (f"{len(paths)} file(s) in image formats that TensorFlow cannot decode ({kinds}: "
            f"{shown}); convert them to JPEG or PNG to use them")


def _subfolders(folder):
    return sorted(d for d in os.listdir(folder)
                  if _is_data(d) and os.path.isdir(os.path.join(folder, d)))


def _class_folder_rows(folder, one_class=False):
    """Rows of a `root/[split/]class/.../image` folder, or None if it is not one.

    Split folders are `train`, `validation` and `test` in any case; images in
    a class folder's sub-folders belong to the class. Images lying beside the
    class folders are left out with a `DataWarning`. A folder of one class
    is an error, unless `one_class` (data evaluated with a trained model's
    classes: a held-out folder of one of them is fine).
    """
    subdirs = _subfolders(folder)
    if not subdirs:
        return None
    split_dirs = {d: d.lower() for d in subdirs if d.lower() in SPLITS}
    if split_dirs:
        others = [d for d in subdirs if d not in split_dirs and _image_files(os.path.join(folder, d))]
        if others:
            raise DataError(
                f"{folder}: holds split folders ({', '.join(split_dirs)}) and other folders "
                f"with images ({', '.join(others)}); put the class folders inside train/, "
                "validation/ and test/ (the validation folder must be called 'validation'), "
                "or, if a class is called train, validation or test, give the classes and "
                "splits in a labels file (labels.csv with path, label and split columns).")
    layout = [(s, os.path.join(folder, d)) for d, s in split_dirs.items()] or [(None, folder)]
    rows, loose, undecodable = [], [], []
    for split, base in layout:
        loose += [os.path.join(base, n) for n in sorted(filter(_is_data, os.listdir(base)))
                  if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(base, n))]
        for label in _subfolders(base):
            if not class_name(label):
                raise DataError(f"{os.path.join(base, label)}: a class folder whose name is "
                                "only spaces; name it after its class.")
            rows += [{"path": path, "labels": [class_name(label)], "box": None, "split": split,
                      "row": path}
                     for path in _image_files(os.path.join(base, label), undecodable)]
    where = "directly in the split folders" if split_dirs else "directly in the folder"
    if not rows:
        raise DataError(
            f"{folder}: class folders hold no images ({', '.join(IMAGE_EXTENSIONS)})"
            + (f"; {len(loose)} lie {where}: put each in a sub-folder named after its class"
               if loose else "")
            + (f"; the class folders hold {_undecodable_note(undecodable)}"
               if undecodable else "") + ".")
    classes = sorted({row["labels"][0] for row in rows})
    if len(classes) < 2 and not one_class:
        others = sorted(n for n in filter(_is_data, os.listdir(folder))
                        if n.lower().endswith((".csv", ".jsonl", ".json")))
        raise DataError(
            f"{folder}: read as class folders, but only one holds images ({classes[0]!r}); "
            f"{TWO_CLASSES_NEEDED} classes."
            + (f" Not read: {', '.join(others)} (a labels file must be called "
               f"{', '.join(LABEL_FILE_NAMES)}, or train/validation/test .jsonl/.csv)."
               if others else ""))
    if loose:
        warnings.warn(DataWarning(
            f"{folder}: left out {len(loose)} image file(s) lying {where}, outside the class "
            f"folders: {', '.join(loose[:5])}{', ...' if len(loose) > 5 else ''}."),
            stacklevel=2)
    if undecodable:
        warnings.warn(DataWarning(
            f"{folder}: the class folders hold {_undecodable_note(undecodable)}; they are "
            "left out."), stacklevel=2)
    return rows


def _rows_by_split(source, need_box, seed, on_error, split=None, one_class=False):
    source = DEFAULT_SAMPLE_DIR if source in (None, "default") else user_path(source)
    if os.path.isfile(source):
        files = {None: source}
    elif os.path.isdir(source):
        per_split = per_split_files(source)
        if per_split:
            needed = ["train"] + ([split] if split else [])
            if any(s not in per_split for s in needed):
                raise DataError(missing_split_files_problem(source, per_split, needed))
            files = per_split
        else:
            single = find_file(source, LABEL_FILE_NAMES)
            files = {None: single} if single else None
        if files and split == "train":
            warn_if_other_data_files(source, files.values(), LABEL_FILE_NAMES)
    else:
        raise DataError(f"{source}: no such folder or labels file (expected 'default', a "
                        "labels file, a folder holding one, or a folder of class folders).")
    skipped_labels = []  # of the bad rows that could have trained (`skipped_training_labels`)
    if files is None:
        rows = _class_folder_rows(source, one_class)
        if rows is None:
            raise DataError(f"{source}: no labels file (looked for {', '.join(LABEL_FILE_NAMES)} "
                            "or train/validation/test .jsonl/.csv) and no class sub-folders"
                            f"{data_files_hint(source, 'labels.csv')}.")
        if need_box:
            raise DataError(f"{source}: class folders have no boxes; localization needs a "
                            "labels file with a 'box' column.")
    else:
        rows = []
        for split_name, path in files.items():
            read = read_labels_file(path, need_box, on_error)
            if split_name in (None, "train"):
                skipped_labels = read.skipped_labels
            if split_name is None:  # the one labels file: its rows may be hashed
                warn_if_partly_split(read)
            for row in read:
                row["split"] = split_name or row["split"]
                rows.append(row)
        if split == "train" and os.path.isdir(source):
            _warn_if_images_unlisted(source, files.values(), rows)
    # Rows that name no split come from the class folders or the one labels file.
    root = source if files is None else os.path.dirname(os.path.abspath(files.get(None) or
                                                                        source))
    grouped = {s: [] for s in SPLITS}
    first_path = {}
    for row in rows:
        # Every path to one file (a link to it, "./a.png" beside "a.png") is
        # hashed as the first row's, so that the file lands in one split.
        key = first_path.setdefault(_file_key(row["path"]), row["path"])
        grouped[row["split"] or _hash_split(key, seed, root)].append(row)
    return source, grouped, skipped_labels


def _warn_if_images_unlisted(folder, files, rows):
    """Warns (`DataWarning`) when `folder`, whose labels file is read, also
    holds class folders with images that no row lists: a `labels.csv` left
    in a folder of class folders made them unread without a word (a class
    of 30 photos disappeared from `class_names`)."""
    if not _subfolders(folder):
        return
    listed = {_file_key(row["path"]) for row in rows}
    unlisted = [path for path in _image_files(folder) if _file_key(path) not in listed]
    if not unlisted:
        return
    parts = [os.path.relpath(path, folder).split(os.sep) for path in unlisted]
    folders = sorted({p[0] for p in parts if len(p) > 1})
    names = ", ".join(os.path.basename(f) for f in files)
    warnings.warn(DataWarning(
        f"{folder}: {len(unlisted)} image file(s) below it are not listed in {names} and are "
        f"left out ({', '.join(unlisted[:3])}{', ...' if len(unlisted) > 3 else ''}"
        + (f"; in folder(s) {', '.join(folders[:5])}{', ...' if len(folders) > 5 else ''}"
           if folders else "")
        + f"): a labels file in a folder is read instead of its class folders, and only the "
          f"rows it lists (valid ones) are used; to use the class folders, move {names} "
          "away."), stacklevel=3)


def _file_key(path):
    """What identifies an image file however a row names it (through a link,
    with `./` or `..`)."""
    return os.path.realpath(path)


def _rows_listed(locations):
    """"a.csv:2, a.csv:5, a.csv:9 and 4 more rows"."""
    return _listed(locations, count=3, noun="rows")


def _one_row_per_file(rows, task, on_error, one_target=True):
    """The rows of one split with each image file once.

    Rows naming one file (by any path) with the same labels (and box) are
    folded into the first, whose location then names them all: a captions
    file names an image once per caption, and counting each copy weighted
    the test accuracy by the number of captions. For `"multilabel"` the
    rows' labels are merged (one row per object, as in VOC's annotations).
    For `"multiclass"` and `"localization"`, rows giving one file different
    labels or boxes are bad rows, each named with the others; without
    `one_target` (retrieval, which scores an image against every label it
    has) they are kept, one row per label (and box).
    """
    by_file = {}
    for row in rows:
        by_file.setdefault(_file_key(row["path"]), []).append(row)
    if len(by_file) == len(rows):
        return rows
    kept, problems = [], []
    for same in by_file.values():
        if task == "multilabel":
            same = [{**same[0], "labels": list(dict.fromkeys(
                label for row in same for label in row["labels"]))}] + same[1:]
            targets = {None: same}
        else:
            targets = {}
            for row in same:
                targets.setdefault((tuple(row["labels"]), row["box"]), []).append(row)
        if len(targets) == 1 or not one_target:
            kept += [{**group[0],
                      "row": _rows_listed(list(dict.fromkeys(r["row"] for r in group)))}
                     for group in targets.values()]
            continue
        what = "labels" if len({labels for labels, _ in targets}) > 1 else "boxes"
        for row in same:
            mine = (tuple(row["labels"]), row["box"])
            others = "; ".join(
                f"{_describe_target(*target, what)} at {_rows_listed([r['row'] for r in group])}"
                for target, group in targets.items() if target != mine)
            path = "" if row["row"] == row["path"] else f"{row['path']} "
            problems.append((row["row"], (
                f"image {path}is {_describe_target(*mine, what)} here but {others} "
                f"(one image, one {'class' if what == 'labels' else 'box'}: fix the rows"
                + (", or use task='multilabel' to give an image several classes)"
                   if task == "multiclass" and what == "labels" else ")"))))
    handle_problems(problems, on_error, "rows", total=len(rows))
    return kept


def _describe_target(labels, box, what):
    if what == "labels":
        return LABEL_SEPARATOR.join(map(repr, labels))
    return f"box {' '.join(f'{v:g}' for v in box)}"


def load_image_label_records(source="default", split="train", task="multiclass", seed=0,
                             on_error="raise", class_names=None, other_labels="bad"):
    """Loads one split of an image-classification source (see the module docstring).

    Args:
        source: str. `"default"`, a labels file, or a folder.
        split: str. `"train"`, `"validation"` or `"test"`.
        task: str. `"multiclass"`, `"multilabel"` or `"localization"` (needs boxes).
        seed: int. Seed of the hash split.
        on_error: str. `"raise"` or `"skip"`.
        class_names: list of str or None. The classes that targets index: by
            default the sorted labels of the training split; a trained model
            evaluated on other data passes its own (rows with other labels are
            bad rows).
        other_labels: str. `"bad"`: rows with a label outside `class_names`
            are bad rows; `"keep"`: they are kept (`class_names` still lists
            only the training split's classes or those given), for tasks that
            meet new classes outside training (few-shot matching's held-out
            classes, retrieval); there a file that rows name with different
            labels is one row per label, not a bad row.

    Returns:
        `ImageLabelRecords`.
    """
    check_choice("split", split, SPLITS)
    check_choice("task", task, TASKS)
    check_choice("other_labels", other_labels, ("bad", "keep"))
    check_on_error(on_error)
    where, grouped, skipped_labels = _rows_by_split(source, task == "localization", seed,
                                                    on_error, split,
                                                    one_class=class_names is not None)
    warn_if_splits_overlap(where, grouped, split, "path")
    not_known = "are not among the model's classes"
    if class_names is None:
        # (Rows of several labels are bad rows for the one-label tasks: their
        # labels name no class, which no row would then train.)
        single = [label for row in grouped["train"] for label in row["labels"]
                  if task == "multilabel" or len(row["labels"]) == 1]
        class_names = sorted_class_names(
            single or [label for row in grouped["train"] for label in row["labels"]])
        not_known = "do not occur in the training split"
        if not class_names:
            raise empty_split_error(where, "train", grouped)
        if task == "multiclass":
            check_two_classes(where, class_names)
        if split == "train":
            warn_if_classes_skipped(where, skipped_labels, class_names)
            _warn_if_comma_joined(where, grouped["train"], class_names)
    class_names = given_class_names(class_names)
    chosen = grouped[split]
    if not chosen:
        raise empty_split_error(where, split, grouped)
    if task != "multilabel":
        # A localization row of several labels gave its box to the first and
        # made a class of each other one, silently.
        needs = ("multiclass needs one; use task='multilabel'" if task == "multiclass" else
                 "localization needs one class per box")
        several = [(r["row"], f"{len(r['labels'])} labels {r['labels']} ({needs})")
                   for r in chosen if len(r["labels"]) != 1]
        handle_problems(several, on_error, "rows", total=len(chosen))
        chosen = [r for r in chosen if len(r["labels"]) == 1]
    chosen = _one_row_per_file(chosen, task, on_error, one_target=other_labels == "bad")
    known = set(class_names)
    unknown = [(r["row"], f"label(s) {sorted(set(r['labels']) - known)} {not_known}")
               for r in chosen if not set(r["labels"]) <= known and other_labels == "bad"]
    if unknown:
        handle_problems(unknown, on_error, "rows", total=len(chosen))
        bad = {loc for loc, _ in unknown}
        chosen = [r for r in chosen if r["row"] not in bad]
    return ImageLabelRecords(
        paths=[r["path"] for r in chosen], labels=[r["labels"] for r in chosen],
        boxes=[r["box"] for r in chosen] if task == "localization" else None,
        rows=[r["row"] for r in chosen], class_names=class_names)


def _finish(ds, size, shuffle, shuffle_buffer, seed, augment, batch_size, deterministic,
            drop_remainder):
    # An unshuffled dataset keeps the records' order (evaluation pairs
    # predictions with the records); `options.deterministic` covers the maps
    # upstream too.
    deterministic = bool(deterministic) or not shuffle
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, max(size, 1)), seed=seed,
                        reshuffle_each_iteration=True)
    if augment:
        rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, rng)).map(
            lambda pair, s: (augment_image(pair[0], s), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic or None)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def make_image_classification_dataset(source="default", split="train", *, task="multiclass",
                                      image_size=(224, 224), crop=None, augment=False,
                                      batch_size=32, shuffle=None, shuffle_buffer=10000,
                                      cache=True, deterministic=False, seed=0,
                                      on_error="raise", drop_remainder=False,
                                      return_records=False, class_names=None):
    """Builds a batched, prefetched dataset of (uint8 image, target) for one split.

    Pipeline: read files → decode + resize (+ center crop) in a parallel `map`
    (`mmtl_tf.data.decoded_image_dataset`, which checks every file and names the
    bad ones) → cache of uint8 pixels → shuffle → optional augmentation → batch →
    prefetch. Targets follow `task` (see the module docstring).

    Args:
        source: str. `"default"`, a labels file or a folder (module docstring).
        split: str. `"train"`, `"validation"` or `"test"`.
        task: str. `"multiclass"`, `"multilabel"` or `"localization"`.
        image_size: (height, width).
        crop: bool or None. Aspect-preserving resize + center crop; None means
            True, except for localization, whose boxes need the whole image
            (stretched), so `crop=True` is refused there.
        augment: bool. Random flip / zoom / brightness / contrast of the
            training split (for another split it is ignored, with a warning;
            not for localization: the boxes would not follow).
        batch_size: int.
        shuffle: bool or None. None shuffles the training split only.
        shuffle_buffer: int.
        cache: bool or str. Cache decoded pixels in memory (True) or files (a
            path prefix, to which a key of the files and settings is added, so
            that another dataset never reads them; see `decoded_image_dataset`).
        deterministic: bool. Same order and augmentation on every run (always
            the same order when not shuffled).
        seed: int. Shuffle / augmentation / hash-split seed.
        on_error: str. `"raise"` or `"skip"`.
        drop_remainder: bool.
        return_records: bool. Also return the `ImageLabelRecords` (class names,
            paths, targets).
        class_names: list of str or None. The classes targets index (default:
            the training split's); a trained model's own for other data.

    Returns:
        `tf.data.Dataset` of (uint8 (B, H, W, 3), targets), or (dataset,
        records) with `return_records=True`. The dataset's `class_names`
        attribute (as on Keras' `image_dataset_from_directory`) lists the
        classes the targets index.

    Example:
        >>> import mmtl_tf
        >>> ds = mmtl_tf.data.make_image_classification_dataset(
        ...     "default", "validation", image_size=(64, 64), batch_size=8)
        >>> images, labels = next(iter(ds))
        >>> images.shape, labels.shape
        (TensorShape([8, 64, 64, 3]), TensorShape([8]))
        >>> len(ds.class_names)
        9
    """
    check_choice("task", task, TASKS)
    check_on_error(on_error)
    batch_size = check_count("batch_size", batch_size)
    if crop is None:
        crop = task != "localization"
    if task == "localization" and (crop or augment):
        raise ValueError("task='localization' needs crop=False and augment=False: the boxes "
                         "are given for the whole, unaugmented image.")
    augment = augment_for_split(augment, split)
    records = load_image_label_records(source, split, task, seed, on_error, class_names)
    with loading_split(split):  # bad files are said to be this split's
        images, kept = decoded_image_dataset(records.paths, image_size, crop=crop,
                                             cache=cache, on_error=on_error,
                                             locations=records.rows)
    if len(kept) != len(records):
        records = records.subset(kept)  # the dataset's indices count kept files
        if split == "train":
            warn_if_classes_lost(records.class_names, records.labels,
                                 given=class_names is not None)
    targets = tf.nest.map_structure(tf.constant, records.targets(task))
    ds = images.map(lambda i, image: (image, tf.nest.map_structure(
        lambda t: tf.gather(t, i), targets)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic or None)
    ds = _finish(ds, len(records), split == "train" if shuffle is None else shuffle,
                 shuffle_buffer, seed, augment, batch_size, deterministic, drop_remainder)
    ds.class_names = list(records.class_names)
    return (ds, records) if return_records else ds


# ---- TFDS (users with internet); the same functions serve local examples in tests.

def multi_hot(label_ids, num_classes):
    """int class ids (n,) → float32 multi-hot (num_classes,); repeats count once."""
    hot = tf.reduce_sum(tf.one_hot(tf.cast(label_ids, tf.int32), num_classes, dtype=tf.float32),
                        axis=0)
    return tf.ensure_shape(tf.minimum(hot, 1.0), [num_classes])


def largest_object(boxes, label_ids):
    """The label and box of the largest-area object (the image's main object).

    Args:
        boxes: float (n, 4) `[ymin, xmin, ymax, xmax]`, n >= 1.
        label_ids: int (n,).

    Returns:
        (int32 label, float32 box (4,)).
    """
    boxes = tf.cast(boxes, tf.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    i = tf.argmax(area)
    return tf.cast(tf.gather(label_ids, i), tf.int32), tf.ensure_shape(tf.gather(boxes, i), [4])


def tfds_targets(example, name, task, num_classes):
    """The target of one TFDS example (dict) for `task`; see `TFDS_IMAGE_DATASETS`."""
    kind = TFDS_IMAGE_DATASETS[name]["kind"]
    if kind == "label":
        return tf.cast(example["label"], tf.int32)
    objects = example["objects"]
    if task == "multilabel":
        return multi_hot(objects["label"], num_classes)
    label, box = largest_object(objects["bbox"], objects["label"])
    return label if task == "multiclass" else {"class": label, "box": box}


def tfds_image_pipeline(examples, name, task, num_classes, image_size=(224, 224), crop=None,
                        batch_size=32, shuffle=False, shuffle_buffer=10000, augment=False,
                        cache=True, seed=0, deterministic=False, cache_key=""):
    """TFDS-format examples (dicts with `"image"` uint8 and labels) → (uint8 image, target) batches.

    Images are resized (and center-cropped, except for localization) in the
    graph with `mmtl_tf.data.resize_and_crop`, targets come from
    `tfds_targets`. `load_tfds_image_dataset` feeds TFDS here; tests feed local
    examples in the same format. A `cache` path prefix gets a key of `name`,
    `task`, `image_size`, `crop` and `cache_key` (the split), so that another
    split or size never reads these cache files
    (`mmtl_tf.data.file_dataset.cache_file`).
    """
    check_choice("task", task, TFDS_IMAGE_DATASETS[name]["tasks"])
    if crop is None:
        crop = task != "localization"
    if task == "localization" and (crop or augment):
        raise ValueError("task='localization' needs crop=False and augment=False.")

    def convert(example):
        image = tf.cast(example["image"], tf.float32)
        image = tf.cond(tf.equal(tf.shape(image)[-1], 1), lambda: tf.tile(image, [1, 1, 3]),
                        lambda: image)
        return (resize_and_crop(image, image_size, crop=crop),
                tfds_targets(example, name, task, num_classes))

    ds = examples.map(convert, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=deterministic or None)
    if cache:
        ds = ds.cache("" if cache is True else cache_file(
            str(cache), [], f"tfds {name} {task} {tuple(image_size)} {crop} {cache_key}"))
    size = int(ds.cardinality()) if int(ds.cardinality()) > 0 else shuffle_buffer
    return _finish(ds, size, shuffle, shuffle_buffer, seed, augment, batch_size, deterministic,
                   False)


def load_tfds_image_dataset(name, split="train", *, task=None, image_size=(224, 224),
                            batch_size=32, shuffle=None, augment=False, data_dir=None,
                            download=True, seed=0, cache=True):
    """A TFDS image dataset (needs internet the first time) as (uint8 image, target) batches.

    Args:
        name: str. `"tf_flowers"` (5 classes), `"cats_vs_dogs"` (2) or
            `"voc/2007"` (20; tasks multiclass = class of the largest object,
            multilabel = all object classes, localization = largest object).
        split: str. `"train"`, `"validation"` or `"test"` (flowers and
            cats-vs-dogs have only a train split: 80/10/10 of it).
        task: str or None. None → the dataset's first task (multiclass).
        image_size: (height, width).
        batch_size: int.
        shuffle: bool or None. None shuffles the training split only.
        augment: bool. Random flip / zoom / brightness / contrast of the
            training split (for another split it is ignored, with a warning).
        data_dir: str or None. TFDS data folder.
        download: bool. Let TFDS download and prepare the data.
        seed: int.
        cache: bool or str.

    Returns:
        (dataset, class names).

    Raises:
        RuntimeError: the data could not be downloaded or found; the message
            says how to prepare it on a machine with internet.
    """
    check_choice("name", name, sorted(TFDS_IMAGE_DATASETS))
    check_choice("split", split, SPLITS)
    spec = TFDS_IMAGE_DATASETS[name]
    task = task or spec["tasks"][0]
    check_choice("task", task, spec["tasks"])
    augment = augment_for_split(augment, split)
    import tensorflow_datasets as tfds

    try:
        check_download_reachable(name, data_dir, download)
        with tfds_temp_folder():
            examples, info = tfds.load(name, split=spec["splits"][split], data_dir=data_dir,
                                       download=download, with_info=True)
    except Exception as e:  # network, missing data and TFDS errors come in many types
        raise DownloadError(
            f"could not load TFDS dataset {name!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). It needs internet the first time: "
            f"run `python -c \"import tensorflow_datasets as tfds; tfds.load('{name}')\"` on a "
            "machine with internet and copy its ~/tensorflow_datasets/"
            + (f"{name} into {data_dir}." if data_dir else
               f"{name} here (or into a folder you pass as data_dir=).")) from e
    label_feature = info.features["label"] if spec["kind"] == "label" else \
        info.features["objects"]["label"]
    class_names = list(label_feature.names)
    ds = tfds_image_pipeline(examples, name, task, len(class_names), image_size=image_size,
                             batch_size=batch_size,
                             shuffle=split == "train" if shuffle is None else shuffle,
                             augment=augment, cache=cache, seed=seed,
                             cache_key=f"{spec['splits'][split]} {info.version}")
    return ds, class_names
