"""Helpers shared by the shared-embedding-space tasks (`dual-encoder`,
`siamese`, `triplet`, `matching`) and reusable by other modalities' tasks:
labelled images in memory, image towers from a config, category retrieval
with baselines, contrastive fitting and the retrieval table."""

import os

import keras
import numpy as np

from mmtl_tf import runtime, training
from mmtl_tf.data.image import decoded_image_dataset
from mmtl_tf.data.image_classification import load_image_label_records
from mmtl_tf.data.sources import SPLITS
from mmtl_tf.encoders.image_encoder import ImageEncoder
from mmtl_tf.errors import DataError, loading_split
from mmtl_tf.metrics.retrieval import (positives_from_labels, retrieval_metrics,
                                       retrieval_metrics_by_chunk)


def image_size(config):
    """The recipe's `image_size` as [height, width]."""
    size = config["image_size"]
    return [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]


def build_image_tower(config, name="image_encoder"):
    """An `ImageEncoder` from the recipe keys `image_backbone` ("small_cnn" or a
    `keras.applications` name), `image_weights`, `image_trainable`,
    `conv_filters`, `conv_blocks`."""
    weights = config.get("image_weights")
    if config.get("image_backbone", "small_cnn") == "small_cnn" and weights is not None:
        # `--image-backbone small_cnn` with a pretrained recipe trained a
        # frozen random CNN to chance (R@1 0.002 against 0.004), silently.
        raise ValueError(
            f"image_backbone 'small_cnn' has no pretrained weights, but the recipe sets "
            f"image_weights={weights!r} (with image_trainable="
            f"{config.get('image_trainable', 'full')!r}) for its pretrained backbone; give a "
            "keras.applications backbone, or train the small CNN from scratch with a recipe "
            "that sets no image_weights (the task's default recipe).")
    return ImageEncoder(config.get("image_backbone", "small_cnn"),
                        input_shape=(*image_size(config), 3), pooling="avg",
                        weights=config.get("image_weights"),
                        trainable=config.get("image_trainable", "full"),
                        conv_filters=int(config.get("conv_filters", 32)),
                        conv_blocks=int(config.get("conv_blocks", 1)), name=name)


def _label_records(source, split, seed, on_error):
    """One split of a labelled image source, read as `head-swap` reads it
    (`mmtl_tf.data.load_image_label_records`): class folders, a labels file
    (`path`, `label`; a captions file is one, its captions unused), per-split
    files or a split column. Rows whose label the training split lacks are
    kept (matching holds classes out; retrieval scores any label)."""
    return load_image_label_records(source, split, "multiclass", seed=seed, on_error=on_error,
                                    other_labels="keep")


def load_labelled_images(source, splits, size, on_error="raise", seed=0, cache=None):
    """Decodes the images of some splits of a labelled source into memory.

    Args:
        source: str. `"default"`, a labels or captions file, a folder holding
            one (or per-split files), or a folder of class folders: the
            sources of `mmtl_tf.data.load_image_label_records`.
        splits: sequence of str. Splits to load and concatenate.
        size: (height, width).
        on_error: str. `"raise"` or `"skip"`.
        seed: int. Hash-split seed for rows that name no split.
        cache: callable or None. split → the `cache` argument of
            `decoded_image_dataset` (e.g. `common.dataset_cache`); None: in
            memory. The decoded images are copied into the returned arrays
            either way; the cache only holds them while they are copied.

    Rows of a split that name a file and label an earlier row of the split
    named (a captions file names an image once per caption) are loaded once:
    each image counts once in pairs, episodes and retrieval, and is never
    its own "other image" (every image found its copy: R@1 1.000 for the
    model and the raw pixels alike). Bad files are still reported with all
    their rows.

    Returns:
        dict with `images` uint8 (N, H, W, 3), `labels` int32 (N,) indexing
        `class_names` (the training split's sorted labels plus, for splits
        with other labels, those labels after them), `class_names`, `paths`,
        `split` (str per row).
    """
    images, labels, paths, split_of = [], [], [], []
    class_names = None
    for split in splits:
        records = _label_records(source, split, seed, on_error)
        if class_names is None:
            class_names = list(records.class_names)
        # The checking pass fills the cache; the copy below reads it.
        with loading_split(split):  # bad files are said to be this split's
            ds, kept = decoded_image_dataset(records.paths, tuple(size), on_error=on_error,
                                             locations=records.rows,
                                             cache=True if cache is None else cache(split))
        if len(kept) != len(records):
            records = records.subset(kept)  # the dataset's indices count kept files
        first = first_rows(records.paths, [row[0] for row in records.labels])
        if not first.all():
            records = records.subset(np.flatnonzero(first).tolist())
        batch = [img[first[i]] for i, img in ds.batch(512).as_numpy_iterator()]
        images.append(np.concatenate(batch) if batch else
                      np.zeros((0, *size, 3), np.uint8))
        row_labels = [row[0] for row in records.labels]  # multiclass: one label per row
        for label in row_labels:
            if label not in class_names:
                class_names.append(label)
        labels.extend(class_names.index(label) for label in row_labels)
        paths.extend(records.paths)
        split_of.extend([split] * len(records))
    return {"images": np.concatenate(images), "labels": np.asarray(labels, np.int32),
            "class_names": class_names, "paths": paths, "split": np.asarray(split_of)}


def file_key(path):
    """The key of an image file: its absolute, normalised path (as the hash
    split keys it), so that `img/a.png` and `./img/a.png` are one file."""
    return os.path.abspath(path)


def first_rows(paths, labels):
    """bool (N,): whether each row is the first to name its file with its
    label (the rows after it repeat it)."""
    seen, first = set(), np.zeros(len(paths), bool)
    for i, key in enumerate(zip(map(file_key, paths), labels)):
        first[i] = key not in seen
        seen.add(key)
    return first


def available_splits(source, seed=0, missing=None, on_error="raise"):
    """The splits of `source` that have rows (train is required).

    `missing`: a dict or None; filled with {split: the `DataError` that says
    why it has no rows}, for tasks that need a split to tell the user which
    and why (the splits left out were silently dropped).
    """
    found = []
    for split in SPLITS:
        try:
            _label_records(source, split, seed, on_error)
            found.append(split)
        except DataError as e:
            if split == "train":
                raise
            if missing is not None:
                missing[split] = e
    return found


def embed_images(embedding_model, images, batch_size=256):
    """Embeddings of a uint8 image array (N, H, W, 3) with an embedding model."""
    return np.asarray(embedding_model.predict(images, batch_size=batch_size, verbose=0),
                      np.float32)


def pixel_embeddings(images):
    """Raw pixels as vectors, centred per image: the untrained baseline."""
    x = images.reshape(len(images), -1).astype(np.float32)
    return x - x.mean(axis=1, keepdims=True)


def category_retrieval(query, query_labels, gallery, gallery_labels, ks=(1, 5, 10),
                       leave_one_out=False, query_files=None, gallery_files=None):
    """Same-category retrieval: test images query the training images.

    `R@1` here is the accuracy of a 1-nearest-neighbour classifier; the
    chance level of `R@1` is the mean fraction of the gallery that a query
    ranks that shares the query's label. With `leave_one_out` the queries
    are the gallery (as when the training images are evaluated): a query
    never retrieves itself, for the model, the pixel baseline and chance alike
    (else each found itself: R@1 = 1). With `query_files` and
    `gallery_files` (each row's image file, e.g. its path) no query retrieves
    its own file either: gallery rows naming the query's file (the file's
    other rows, or the same file in another split) are left out of its
    ranking and its chance level, as the query itself is.
    """
    if leave_one_out and len(query) != len(gallery):
        raise ValueError(f"leave_one_out needs the queries to be the gallery; got "
                         f"{len(query)} queries and {len(gallery)} gallery items.")
    if (query_files is None) != (gallery_files is None):
        raise ValueError("give both query_files and gallery_files, or neither.")
    files = _file_codes(query_files, gallery_files, len(query), len(gallery), leave_one_out)
    codes = _label_codes(query_labels, gallery_labels)
    if codes is None:  # labels np.unique cannot stand in for `==` on
        return _category_retrieval_matrix(query, query_labels, gallery, gallery_labels, ks,
                                          leave_one_out, files)
    query_codes, gallery_codes, num_codes = codes
    # The (Q, G) positives and left-out matrices, built per chunk of queries
    # from the labels and files (whole, they took 1.2 GB for 16k images).
    counts = np.bincount(gallery_codes, minlength=num_codes)[query_codes]  # positives per query
    ranked = np.full(len(query), len(gallery))
    query_file = None
    if files is not None:
        query_file, gallery_file, num_files = files
        # The gallery rows of each query's file (itself, with leave_one_out),
        # and those of them with its label: not ranked, not positives.
        ranked = ranked - np.bincount(gallery_file, minlength=num_files)[query_file]
        counts = counts - _pair_counts(query_file, query_codes, gallery_file, gallery_codes)
    rows = np.flatnonzero(counts > 0)
    if len(counts) and not len(rows):
        # (It said "need at least one query and one gallery item".)
        raise ValueError(f"none of the {len(counts)} queries can be answered: no gallery item "
                         "shares a query's label" + (" (other than the query's own file)"
                                                     if files is not None else "")
                         + "; the query and gallery splits need classes in common.")
    if len(rows) < len(counts):
        # A query whose category has no (other) gallery item cannot be answered.
        query, query_codes, counts, ranked = (query[rows], query_codes[rows], counts[rows],
                                              ranked[rows])
        query_file = None if query_file is None else query_file[rows]

    def positives_of(start, stop):
        return query_codes[start:stop, None] == gallery_codes[None, :]

    exclude_of = None
    if query_file is not None and (ranked < len(gallery)).any():
        def exclude_of(start, stop):
            return query_file[start:stop, None] == gallery_file[None, :]

    metrics = retrieval_metrics_by_chunk(query, gallery, positives_of, ks,
                                         exclude_of=exclude_of)
    metrics["chance_R@1"] = float(np.mean(counts / ranked))
    metrics["num_queries"] = int(len(query))
    return metrics


def _file_codes(query_files, gallery_files, num_queries, num_gallery, leave_one_out):
    """Integer codes of the query and gallery files (one file, one code) and
    their number; with `leave_one_out` and no files, each row its own file
    (the query is gallery row i); None without files nor leave-one-out."""
    if query_files is None:
        if not leave_one_out:
            return None
        return np.arange(num_queries), np.arange(num_gallery), num_gallery
    if len(query_files) != num_queries or len(gallery_files) != num_gallery:
        raise ValueError(f"{len(query_files)} query files for {num_queries} queries and "
                         f"{len(gallery_files)} gallery files for {num_gallery} gallery "
                         "items.")
    keys = [file_key(f) for f in (*query_files, *gallery_files)]
    values, codes = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    codes = codes.reshape(-1)
    query_file, gallery_file = codes[:num_queries], codes[num_queries:]
    if leave_one_out and not (query_file == gallery_file).all():
        raise ValueError("leave_one_out needs the queries to be the gallery; the query "
                         "and gallery files differ.")
    return query_file, gallery_file, len(values)


def _pair_counts(query_file, query_codes, gallery_file, gallery_codes):
    """For each query, the gallery rows with its file and its label code."""
    if len(gallery_file) == 0:
        return np.zeros(len(query_file), np.int64)
    width = int(max(query_codes.max(initial=0), gallery_codes.max(initial=0))) + 1
    pairs, counts = np.unique(gallery_file.astype(np.int64) * width + gallery_codes,
                              return_counts=True)
    wanted = query_file.astype(np.int64) * width + query_codes
    at = np.minimum(np.searchsorted(pairs, wanted), len(pairs) - 1)
    return np.where(pairs[at] == wanted, counts[at], 0)


def _label_codes(query_labels, gallery_labels):
    """Integer codes of the query and gallery labels (equal labels, equal
    codes) and their number, or None for labels whose `==` np.unique may not
    follow (floats: NaN; objects; strings beside numbers)."""
    q, g = np.asarray(query_labels).reshape(-1), np.asarray(gallery_labels).reshape(-1)
    kinds = {q.dtype.kind, g.dtype.kind}
    if not (kinds <= set("biu") or kinds == {"U"} or kinds == {"S"}):
        return None
    values, codes = np.unique(np.concatenate([q, g]), return_inverse=True)
    codes = codes.reshape(-1)
    return codes[:len(q)], codes[len(q):], len(values)


def _category_retrieval_matrix(query, query_labels, gallery, gallery_labels, ks,
                               leave_one_out, files=None):
    """`category_retrieval` with (Q, G) matrices, for labels of other kinds;
    `files`: `_file_codes` (None: without leave-one-out nor files)."""
    positives = positives_from_labels(query_labels, gallery_labels)
    exclude = None
    if files is None and leave_one_out:
        files = _file_codes(None, None, len(query), len(gallery), True)
    if files is not None:
        query_file, gallery_file, _ = files
        exclude = query_file[:, None] == gallery_file[None, :]  # with leave_one_out: itself
        positives = positives & ~exclude
        if not exclude.any():
            exclude = None
    keep = positives.any(axis=1)
    if not keep.all():
        # A query whose category has no (other) gallery item cannot be answered.
        query, positives = query[keep], positives[keep]
        exclude = None if exclude is None else exclude[keep]
    metrics = retrieval_metrics(query, gallery, positives, ks, exclude=exclude)
    ranked = len(gallery) - (0 if exclude is None else exclude.sum(axis=1))
    metrics["chance_R@1"] = float(np.mean(positives.sum(axis=1) / ranked))
    metrics["num_queries"] = int(len(query))
    return metrics


def fit_and_restore(model, train_ds, val_ds, config, run_dir, verbose):
    """`training.fit` with the run-folder callbacks, then the best weights.

    Saves `model.keras`, `history.json` and `curves.png`; returns (history,
    seconds, best epoch).
    """
    history, seconds = training.fit(model, train_ds, val_ds, epochs=int(config["epochs"]),
                                    run_dir=run_dir, backup=False, verbose=verbose)
    best = os.path.join(run_dir, "best.keras")
    if os.path.exists(best):
        model.load_weights(best)
    training.save_model_atomic(model, os.path.join(run_dir, "model.keras"))
    training.atomic_write_json(history, os.path.join(run_dir, "history.json"))
    training.plot_curves(history, os.path.join(run_dir, "curves.png"),
                         title=f"{config.get('data', '')}")
    key = "val_loss" if "val_loss" in history else "loss"
    return history, seconds, int(np.argmin(history[key])) + 1


def loss_name(metrics):
    """"CLIP loss" or "SigLIP loss", for a dual-encoder run's summary row
    (a SigLIP run's row said "CLIP loss"; metrics.json written before it
    recorded its loss are CLIP runs or unknown: "CLIP loss")."""
    return "SigLIP loss" if metrics.get("loss") == "siglip" else "CLIP loss"


def optimizer(config):
    """AdamW with the recipe's `learning_rate` and `weight_decay` (under
    `mixed_float16` with a loss scale starting at 1:
    `runtime.embedding_optimizer`)."""
    return runtime.embedding_optimizer(keras.optimizers.AdamW(
        float(config["learning_rate"]), weight_decay=float(config.get("weight_decay", 1e-4))))


_ITEMS = {"text": "captions", "image": "images", "audio": "clips"}


def caption_keys(captions, tokenizer):
    """What makes two captions the same answer in the tasks' retrieval (their
    `match_keys`): for a `TextVectorization`, the tokens it makes of each
    caption before looking them up (its own standardisation and split, cut
    to its sequence length), so captions the model cannot tell apart are
    one item while two different out-of-vocabulary words stay different;
    for another tokenizer (a BERT-family preprocessor, whose word pieces
    leave no word out), `"inputs"`: identical token ids. Keyed by
    `strip().lower()`, "A red circle." and "a red circle", which the model
    embeds identically, were two items, and the exact tie counted as a miss
    (R@1 0 for any model on a helper's COCO-like data)."""
    import keras
    import tensorflow as tf

    if not isinstance(tokenizer, keras.layers.TextVectorization):
        return "inputs"
    tokens = tokenizer._preprocess(tf.constant([str(c) for c in captions]))
    length = getattr(tokenizer, "_output_sequence_length", None)
    rows = tokens.to_list() if isinstance(tokens, tf.RaggedTensor) else tokens.numpy().tolist()
    if not isinstance(rows[0] if rows else [], list):
        rows = [[row] for row in rows]  # (no split: one token per caption)
    return [b"\x1f".join(row[:length] if length else row) for row in rows]


def distinct_items(metrics, directions):
    """", 285 distinct captions" for each direction whose gallery has fewer
    items than the pairs (identical captions or images are one item,
    `evaluate_retrieval`'s `collapse`), else ""."""
    parts = []
    for direction in directions:
        gallery = direction.split("_to_")[1]
        size = metrics.get(f"{direction}_num_gallery")
        if size is not None and size != metrics.get("num_pairs"):
            parts.append(f"{size} distinct {_ITEMS.get(gallery, gallery)}")
    return "".join(f", {part}" for part in parts)


def format_retrieval_table(metrics, directions, ks=(1, 5, 10), title=None):
    """A text table: one row per direction, R@K, ranks, mAP@10 and chance."""
    headers = [*(f"R@{k}" for k in ks), "mean rank", "median rank", "mAP@10",
               *(f"chance R@{k}" for k in ks)]
    lines = [title] if title else []
    width = max(len(d) for d in directions) + 2
    lines.append("".ljust(width) + "  ".join(h.rjust(9) for h in headers))
    # Ranks with one decimal whatever their size (143.0 beside 95.5, not 143
    # beside 95.456); recalls and mAP with three.
    formats = [".3f"] * len(ks) + [".1f", ".1f", ".3f"] + [".3f"] * len(ks)
    for direction in directions:
        cells = [metrics.get(f"{direction}_R@{k}") for k in ks]
        cells += [metrics.get(f"{direction}_mean_rank"), metrics.get(f"{direction}_median_rank"),
                  metrics.get(f"{direction}_mAP@10")]
        cells += [metrics.get(f"{direction}_chance_R@{k}", metrics.get(f"chance_R@{k}"))
                  for k in ks]
        lines.append(direction.ljust(width) + "  ".join(
            ("" if v is None else format(v, f)).rjust(9) for v, f in zip(cells, formats)))
    return "\n".join(lines)
