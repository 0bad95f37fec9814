"""TFDS `coco_captions` (for users with internet) as image-caption batches for
the dual encoder: the same resizing and tokenisation as the local pipelines."""

import tensorflow as tf

from mmtl_tf.data.image import resize_and_crop
from mmtl_tf.data.tfds_access import check_download_reachable, tfds_temp_folder
from mmtl_tf.errors import DownloadError

# Our split names → TFDS `coco_captions` splits (Karpathy's: restval joins train).
COCO_SPLITS = {"train": "train+restval", "validation": "val", "test": "test"}


def coco_captions_to_pairs(examples, text_vectorizer, image_size=(224, 224), all_captions=False,
                           batch_size=32, shuffle=False, shuffle_buffer=2048, seed=0,
                           drop_remainder=False, crop=True):
    """TFDS-format image-caption examples → `{"image", "text"}` batches.

    Args:
        examples: `tf.data.Dataset` of dicts with `"image"` (uint8 (H, W, 3))
            and `"captions"`: `{"text": tf.string (k,)}` — the structure of
            TFDS `coco_captions` (5 captions per image).
        text_vectorizer: `keras.layers.TextVectorization` (see
            `mmtl_tf.data.make_text_vectorizer`).
        image_size: (height, width).
        all_captions: bool. False (training): one caption per image, drawn
            anew each epoch. True (evaluation): every (image, caption) pair, the
            image repeated; evaluate with
            `evaluate_retrieval(..., match_keys={"image": "inputs"})` so that
            every caption of an image counts as a correct answer (and the
            image's rows are one item in the gallery, by default).
        batch_size: int.
        shuffle: bool.
        shuffle_buffer: int.
        seed: int.
        drop_remainder: bool.
        crop: bool. Aspect-preserving resize and center crop (else stretch).

    Returns:
        `tf.data.Dataset` of `{"image": uint8 (B, H, W, 3), "text": int32 (B, L)}`.

    Example:
        >>> ds = mmtl_tf.data.coco_captions_to_pairs(examples, vectorizer)  # doctest: +SKIP

    References:
        Chen et al. 2015, "Microsoft COCO Captions"; Karpathy and Fei-Fei 2015
        (the train / restval / val / test split).
    """
    size = tuple(int(s) for s in image_size)

    def prepare(example):
        image = resize_and_crop(tf.cast(example["image"], tf.float32), size, crop)
        return image, tf.reshape(example["captions"]["text"], [-1])

    ds = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if all_captions:
        ds = ds.flat_map(lambda image, texts: tf.data.Dataset.from_tensor_slices(texts).map(
            lambda text: (image, text)))
    else:
        rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

        def pick(pair, s):
            image, texts = pair
            index = tf.random.stateless_uniform([], s, 0, tf.shape(texts)[0], dtype=tf.int32)
            return image, texts[index]

        ds = tf.data.Dataset.zip((ds, rng)).map(pick, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda images, texts: {"image": images,
                                       "text": tf.cast(text_vectorizer(texts), tf.int32)},
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_tfds_coco_captions(split="train", *, text_vectorizer, data_dir=None, download=True,
                            **kwargs):
    """TFDS `coco_captions` (about 38 GB; needs internet the first time) as batches.

    Args:
        split: str. `"train"` (train + restval), `"validation"` or `"test"`.
        text_vectorizer: `TextVectorization` adapted on training captions, e.g.
            `make_text_vectorizer(tfds.load("coco_captions", split="train")
            .map(lambda e: e["captions"]["text"]).unbatch().batch(1024))`.
        data_dir: str or None. TFDS data folder.
        download: bool. Let TFDS download and prepare the data.
        **kwargs: passed to `coco_captions_to_pairs` (defaults:
            `all_captions=True` for validation and test, shuffling for train).

    Returns:
        `tf.data.Dataset` (see `coco_captions_to_pairs`).

    Raises:
        RuntimeError: TFDS could not download or find the data; the message says
            how to prepare it on a machine with internet.

    Example:
        >>> test = mmtl_tf.data.load_tfds_coco_captions("test", text_vectorizer=vec)  # doctest: +SKIP
    """
    if split not in COCO_SPLITS:
        raise ValueError(f"split={split!r} is not allowed; use one of "
                         f"{', '.join(map(repr, COCO_SPLITS))}.")
    import tensorflow_datasets as tfds

    try:
        check_download_reachable("coco_captions", data_dir, download)
        with tfds_temp_folder():
            examples = tfds.load("coco_captions", split=COCO_SPLITS[split], data_dir=data_dir,
                                 download=download)
    except Exception as e:  # no internet, or the data is not prepared
        raise DownloadError(
            f"could not load TFDS 'coco_captions' ({type(e).__name__}: {e}). It needs "
            "internet on first use; on a machine with internet run `tfds build "
            "coco_captions --data_dir DIR` and pass data_dir=DIR.") from e
    kwargs.setdefault("all_captions", split != "train")
    kwargs.setdefault("shuffle", split == "train")
    return coco_captions_to_pairs(examples, text_vectorizer, **kwargs)
