"""Shared code of the `siamese` and `triplet` tasks: one image tower trained so
that images of the same category are close, evaluated by category retrieval."""

import numpy as np
import tensorflow as tf

from mmtl_tf.errors import DataError
from mmtl_tf.tasks import common, shared_space


class Splits(dict):
    """{split: {"images", "labels", "paths"}}; `missing` maps a split without
    rows to the `DataError` that says why."""

    def __init__(self, *args, missing=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.missing = dict(missing or {})


def load_splits(config):
    """Images, labels and paths of train / validation / test, with one class
    list; a file named by several rows of a split with one label is loaded
    once (`shared_space.load_labelled_images`)."""
    missing = {}
    data = shared_space.load_labelled_images(
        config["data"], shared_space.available_splits(config["data"], int(config["seed"]),
                                                      missing=missing,
                                                      on_error=config.get("on_error", "raise")),
        shared_space.image_size(config), on_error=config.get("on_error", "raise"),
        seed=int(config["seed"]), cache=lambda split: common.dataset_cache(config, split))
    splits = Splits(missing=missing)
    paths = np.asarray(data["paths"], dtype=str)
    for split in ("train", "validation", "test"):
        rows = data["split"] == split
        splits[split] = {"images": data["images"][rows], "labels": data["labels"][rows],
                         "paths": paths[rows]}
    return splits, data["class_names"]


def _per_class(labels, class_names):
    values, counts = np.unique(labels, return_counts=True)
    return ", ".join(f"{class_names[v]!r}: {c}" for v, c in zip(values, counts))


def _no_rows(config, splits, split):
    if split in getattr(splits, "missing", {}):
        return str(splits.missing[split]).rstrip()
    return f"{config['data']}: the {split!r} split has no images."


def pair_problem(config, splits, split, class_names):
    """Why no same / different pairs can be drawn from `split` (a sentence
    naming the data and the split), or None if they can."""
    labels = splits[split]["labels"]
    if len(labels) == 0:
        return _no_rows(config, splits, split)
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2 or counts.max() < 2:
        return (f"{config['data']}: pairs need at least 2 classes, one of them with 2 or more "
                f"images, in the {split!r} split; it has {len(values)} class"
                f"{'es' if len(values) != 1 else ''} ({_per_class(labels, class_names)}).")
    return None


def check_split(config, splits, split, class_names, task, pairs=False, evaluating=False):
    """A `DataError` (naming the data, the split and what is missing) unless
    `split` can be evaluated: images, some of a class the training split has
    (category retrieval among the training images: a query whose class has
    none is left out; with `split="train"`, leave-one-out, a class with 2),
    and with `pairs` same / different pairs (pair accuracy). Called before
    training, so that a run is not lost after it; `evaluating`: by
    `mmtl-tf evaluate --split`, which the message then names."""
    labels = splits[split]["labels"]
    measures = f"{'pair accuracy and ' if pairs else ''}category retrieval"
    purpose = (f"`mmtl-tf evaluate --split {split}` of a {task} run measures {measures} on "
               f"these images" if evaluating else
               f"{task} evaluates {measures} on held-out {split} images")
    if len(labels) == 0:
        raise DataError(f"{_no_rows(config, splits, split)} {purpose[0].upper()}"
                        f"{purpose[1:]}: give some rows the split {split!r}"
                        f"{' or evaluate another split' if evaluating else ''}.")
    train = splits["train"]["labels"]
    values, counts = np.unique(train, return_counts=True)
    known = values[counts >= 2] if split == "train" else values
    if not np.isin(labels, known).any():
        raise DataError(
            f"{config['data']}: none of the {len(labels)} {split} images is of a class "
            + ("with 2 or more training images" if split == "train" else
               "that the training split has")
            + f" ({split}: {_per_class(labels, class_names)}; train: "
            f"{_per_class(train, class_names)}); {purpose}, each retrieving training images "
            "of its class.")
    if pairs:
        problem = pair_problem(config, splits, split, class_names)
        if problem:
            raise DataError(f"{problem[:-1]}; {purpose}.")


def other_data_note(config, splits, data):
    """`{"evaluated_on": ...}` for metrics of an evaluation on other data
    (`data`; else `{}`): the source, the seed of its hash split and its
    images per split, which `format_table` prints."""
    if not data:
        return {}
    return {"evaluated_on": {"data": str(data), "seed": int(config["seed"]),
                             "images_per_split": {k: len(v["labels"])
                                                  for k, v in splits.items()}}}


def other_data_line(metrics, split):
    """The line saying how other data was split, or None (the run's own data)."""
    note = metrics.get("evaluated_on")
    if not isinstance(note, dict):
        return None
    counts = note.get("images_per_split", {})
    return (f"on {note.get('data')}: its rows that name no split are split 80/10/10 by the "
            f"hash rule of training (seed {note.get('seed')}); its {counts.get('train', '?')} "
            f"training images are the gallery, its {counts.get(split, '?')} {split} images "
            "the queries")


def index_dataset(indices, arrays, to_example, batch_size):
    """Maps an index dataset to examples gathered from in-memory arrays, batched."""
    tensors = {k: tf.constant(v) for k, v in arrays.items()}
    ds = indices.map(lambda *idx: to_example(tensors, *idx), num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size:
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def retrieval_report(embedding_model, splits, leave_one_out=False):
    """Category retrieval of test images among training images, and baselines.

    `leave_one_out`: `splits["test"]` is the training split itself (evaluating
    the training images): no query retrieves itself, in the model's ranking,
    the pixel baseline, the chance level and the majority class (the most
    frequent label among the other images). Where the splits have `paths`,
    no query retrieves its own image file either (its other rows, or the same
    file in the training split): those are left out alike."""
    train, test = splits["train"], splits["test"]
    files = {}
    if "paths" in train and "paths" in test:
        files = {"query_files": test["paths"], "gallery_files": train["paths"]}
    trained = shared_space.category_retrieval(
        shared_space.embed_images(embedding_model, test["images"]), test["labels"],
        shared_space.embed_images(embedding_model, train["images"]), train["labels"],
        leave_one_out=leave_one_out, **files)
    pixels = shared_space.category_retrieval(
        shared_space.pixel_embeddings(test["images"]), test["labels"],
        shared_space.pixel_embeddings(train["images"]), train["labels"],
        leave_one_out=leave_one_out, **files)
    majority = _majority_of_answered(train["labels"], test["labels"], files, leave_one_out)
    return ({f"category_{k}": v for k, v in trained.items() if not k.startswith("chance")},
            {"category_R@1_chance": trained["chance_R@1"], "category_R@1_pixels": pixels["R@1"],
             "category_mAP@10_pixels": pixels["mAP@10"], "majority_class_accuracy": majority})


def _majority_of_answered(train_labels, test_labels, files, leave_one_out):
    """The majority-class accuracy over the queries category retrieval scores:
    each query answers the most frequent label among the training rows it may
    retrieve (not itself, with `leave_one_out`, nor rows of its own file),
    and queries whose label has no such row are left out, as
    `category_retrieval` leaves them out of R@1 (they counted as wrong here:
    a baseline over other rows than the R@1 beside it)."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    values, counts = np.unique(train_labels, return_counts=True)
    available = np.broadcast_to(counts, (len(test_labels), len(values)))
    codes = shared_space._file_codes(files.get("query_files"), files.get("gallery_files"),
                                     len(test_labels), len(train_labels), leave_one_out)
    if codes is not None and len(values):
        query_file, gallery_file, num_files = codes
        per_file = np.zeros((num_files, len(values)), np.int64)
        np.add.at(per_file, (gallery_file, np.searchsorted(values, train_labels)), 1)
        available = available - per_file[query_file]  # rows of its own file left out
    at = np.minimum(np.searchsorted(values, test_labels), max(len(values) - 1, 0))
    known = (values[at] == test_labels) if len(values) else np.zeros(len(test_labels), bool)
    rows = np.arange(len(test_labels))
    answered = known & (available[rows, at] > 0) if len(values) else known
    if not answered.any():
        return 0.0
    guess = values[np.argmax(available, axis=1)]
    return float(np.mean(guess[answered] == test_labels[answered]))


def format_table(metrics, split, extra_rows=()):
    """Text table of category retrieval (and extra rows) next to the baselines."""
    m, b = metrics[split], common.split_baselines(metrics, split)
    rows = [("1-NN category accuracy (R@1)", m.get("category_R@1"),
             b.get("category_R@1_chance"), b.get("category_R@1_pixels")),
            ("category R@5", m.get("category_R@5"), None, None),
            ("category mAP@10", m.get("category_mAP@10"), None, b.get("category_mAP@10_pixels"))]
    rows += list(extra_rows)
    queries = m.get("category_num_queries", "?")
    # Distinct: a file that several rows name counts once (load_splits) and
    # never finds itself (retrieval_report).
    if split == "train":  # leave-one-out (retrieval_report)
        what = f"{queries} distinct training images query the other training images"
    else:
        what = f"{queries} distinct {split} images query the training images"
    # The names' column fits the longest name: "pair accuracy (threshold from
    # validation)" pushed its value under the next column.
    width = max(len(name) for name, *_ in rows) + 2
    lines = [line for line in [other_data_line(metrics, split)] if line]
    lines += [f"{split}: {what} (same category = correct)",
              f"{'metric':{width}s}{'value':>9s}{'chance':>9s}{'pixels':>9s}"]
    for name, value, chance, pixels in rows:
        cells = ["" if v is None else f"{v:.3f}" for v in (value, chance, pixels)]
        lines.append(f"{name:{width}s}" + "".join(c.rjust(9) for c in cells))
    return "\n".join(lines)


def summary_rows(model_name, metrics):
    test, baselines = metrics["test"], metrics["baselines"]
    return [{"model": model_name, "metric": "test 1-NN category accuracy (retrieval R@1)",
             "value": test["category_R@1"], "baseline": "raw-pixel 1-NN",
             "baseline_value": baselines["category_R@1_pixels"], "params": metrics["params"],
             "train_seconds": metrics["train_seconds"]}]
