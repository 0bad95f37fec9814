"""`make_image_text_dataset`: (image, caption[, label]) rows → a `tf.data` pipeline."""

import tensorflow as tf

from mmtl_tf.data.image import augment_image, decoded_image_dataset
from mmtl_tf.data.sources import (check_two_classes, load_image_text_records,
                                  kept_records)
from mmtl_tf.data.text import vectorize_while_loading
from mmtl_tf.errors import (augment_for_split, check_count, check_on_error, loading_split,
                            without_repeated_warnings)


def make_image_text_dataset(source="default", split="train", *, text_vectorizer=None,
                            vocab_size=5000, sequence_length=100, remove_stopwords=False,
                            image_size=(224, 224), crop=True, grayscale=False,
                            augment=False, batch_size=32, shuffle=None,
                            shuffle_buffer=10000, cache=True, deterministic=False,
                            seed=0, with_labels=True, on_error="raise",
                            drop_remainder=False, class_names=None):
    """Builds a batched, prefetched dataset of images, token ids and labels.

    Pipeline: read files → decode + resize + crop (parallel `map`) → cache of
    uint8 pixels → shuffle → optional augmentation → batch → prefetch. Captions
    are vectorised up front (not per epoch) with a `TextVectorization`
    vocabulary, on another thread while the images are checked
    (`text.vectorize_while_loading`). Every file is
    checked on construction (see `decoded_image_dataset`): a corrupt or missing
    image, an empty caption or a captions file without a required column raises
    `mmtl_tf.DataError` naming the file or row; `on_error="skip"` drops such
    items and warns with their list.

    Args:
        source: str. `"default"` (the bundled emoji sample), a folder or a
            captions file; see `mmtl_tf.data.sources`.
        split: str. `"train"`, `"validation"` or `"test"`.
        text_vectorizer: `keras.layers.TextVectorization` or None. Pass the
            vectorizer adapted on the training split when building validation and
            test datasets; None adapts a new one on this source's training split:
            for `split="train"` on the captions of the rows kept (rows skipped
            with `on_error="skip"` for a bad image do not shape the
            vocabulary); for other splits on every valid training row (the
            training images are not decoded there, so rows with a bad image
            still count): pass the training dataset's vectorizer instead.
        vocab_size: int. Vocabulary size when adapting.
        sequence_length: int. Token ids per caption when adapting.
        remove_stopwords: bool. Drop English stop words when adapting.
        image_size: (height, width).
        crop: bool. Aspect-preserving resize + center crop (else stretch).
        grayscale: bool. One channel instead of three.
        augment: bool. Random flip / zoom / brightness / contrast of the
            training split (for another split it is ignored, with a warning).
        batch_size: int.
        shuffle: bool or None. None shuffles the training split only.
        shuffle_buffer: int.
        cache: bool or str. Cache decoded pixels in memory (True) or files (a
            path prefix, to which a key of the files and settings is added, so
            that another dataset never reads them; see `decoded_image_dataset`).
        deterministic: bool. Same order and augmentations on every run (always
            the same order when not shuffled).
        seed: int. Shuffle / augmentation seed, and the hash split's (for a
            source without a split column): give every split of one source
            the same seed, or rows of one split land in another.
        with_labels: bool. Yield `(inputs, label)` (else only `inputs`).
        on_error: str. `"raise"` or `"skip"`.
        drop_remainder: bool. Drop the last partial batch.
        class_names: list of str or None. The classes that label ids index
            (default: the training split's sorted labels); pass a trained
            model's own when evaluating it on other data.

    Returns:
        A `tf.data.Dataset` of `({"image": uint8 (B, H, W, C), "text": int32
        (B, sequence_length)}, label int32 (B,))`. Its `class_names` attribute
        (as on Keras' `image_dataset_from_directory`) lists the classes the
        labels index: `num_classes=len(ds.class_names)` for the model (a
        dataset derived from it with `.map` etc. does not keep it). Its
        `records` attribute holds the records of the pairs it yields (without
        those skipped with `on_error="skip"`), in its order when not shuffled.
        Its `text_vectorizer` attribute is the `TextVectorization` that made
        the token ids (`text_vectorizer` itself, or the one adapted here): pass
        the training dataset's to the validation and test datasets, and save
        it with the model.

    Example:
        >>> import mmtl_tf
        >>> ds = mmtl_tf.data.make_image_text_dataset(
        ...     "default", split="validation", image_size=(64, 64), batch_size=8)
        >>> x, y = next(iter(ds))
        >>> x["image"].shape, x["text"].shape, y.shape
        (TensorShape([8, 64, 64, 3]), TensorShape([8, 100]), TensorShape([8]))
        >>> len(ds.class_names), ds.class_names[0]
        (9, 'Activities')
    """
    check_on_error(on_error)
    batch_size = check_count("batch_size", batch_size)
    augment = augment_for_split(augment, split)
    records = load_image_text_records(source, split, require_label=with_labels,
                                      seed=seed, on_error=on_error, class_names=class_names)
    if with_labels and class_names is None:
        check_two_classes(source, records.class_names)
    adapt = dict(vocab_size=vocab_size, sequence_length=sequence_length,
                 remove_stopwords=remove_stopwords)
    train_captions = None
    if text_vectorizer is None and split != "train":
        # Skipped rows of the file were reported by the read above.
        train_captions = without_repeated_warnings(
            load_image_text_records, source, "train", require_label=with_labels, seed=seed,
            on_error=on_error).captions
    # The training split's vocabulary is adapted on the rows kept after the
    # images were checked (rows skipped for a bad image do not shape it);
    # other splits' on every valid training row (their images are not decoded
    # here, so rows with a bad image still count).
    def load():
        with loading_split(split):  # bad files are said to be this split's
            return decoded_image_dataset(records.paths, image_size, crop=crop,
                                         grayscale=grayscale, cache=cache, on_error=on_error,
                                         locations=records.rows)

    images, kept, text_vectorizer, tokens = vectorize_while_loading(
        load, records.captions, text_vectorizer, train_captions, **adapt)
    records = kept_records(records, kept, split == "train" and with_labels,
                           given=class_names is not None)
    ds = _assemble(images, records, tokens, with_labels, split, augment,
                   batch_size, shuffle, shuffle_buffer, deterministic, seed, drop_remainder)
    ds.class_names = list(records.class_names)
    ds.records = records
    ds.text_vectorizer = text_vectorizer
    return ds


def _assemble(images, records, tokens, with_labels, split, augment,
              batch_size, shuffle, shuffle_buffer, deterministic, seed,
              drop_remainder):
    labels = tf.constant(records.label_ids() if with_labels else [0] * len(records),
                         tf.int32)

    # Runs on whole batches (one gather per batch instead of a map step per
    # element).
    @tf.autograph.experimental.do_not_convert
    def attach(index, image):
        inputs = {"image": image, "text": tf.gather(tokens, index)}
        return (inputs, tf.gather(labels, index)) if with_labels else inputs

    ds = images
    if shuffle is None:
        shuffle = split == "train"
    # An unshuffled dataset keeps the records' order (evaluation pairs its
    # elements with the records, e.g. retrieval's duplicate captions).
    deterministic = bool(deterministic) or not shuffle
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, max(len(records), 1)), seed=seed,
                        reshuffle_each_iteration=True)
    if augment:
        rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, rng)).map(
            tf.autograph.experimental.do_not_convert(
                lambda pair, s: (pair[0], augment_image(pair[1], s))),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic or None)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(attach, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic or None)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
