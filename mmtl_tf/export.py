"""SavedModel export with serving signatures on raw inputs.

Exports are written into a temporary folder beside the target and renamed into
place only when complete, so a failed export leaves no half-written SavedModel,
and an existing export at the target survives a failed overwrite.
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from mmtl_tf.data.image import preprocess_image_batch


def atomic_directory(path, write_fn):
    """Calls `write_fn(tmp_dir)` and renames `tmp_dir` to `path` on success.

    If `path` exists it is replaced only after the new content is complete.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        write_fn(tmp)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def write_archive(path, endpoints, track=()):
    """Writes a SavedModel with the given endpoints, atomically.

    Args:
        path: str. Target folder.
        endpoints: dict name → `tf.function` with an `input_signature`. The first
            one is also exported as `serving_default` unless a key says so.
        track: list of Keras layers/models whose variables and lookup tables the
            endpoints use.
    """
    archive = keras.export.ExportArchive()
    for item in track:
        archive.track(item)
    endpoints = dict(endpoints)
    if "serving_default" not in endpoints:
        endpoints = {"serving_default": next(iter(endpoints.values())), **endpoints}
    for name, fn in endpoints.items():
        archive.add_endpoint(name, fn)
    return atomic_directory(path, lambda tmp: archive.write_out(tmp, verbose=False))


def classifier_outputs(probabilities, class_names):
    """Serving outputs of a classifier: probabilities, class id and class name."""
    probabilities = tf.cast(probabilities, tf.float32)
    if probabilities.shape[-1] == 1:
        class_id = tf.cast(probabilities[:, 0] > 0.5, tf.int32)
    else:
        class_id = tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)
    outputs = {"probabilities": probabilities, "class_id": class_id}
    if class_names:
        outputs["class_name"] = tf.gather(tf.constant(list(class_names)), class_id)
    return outputs


def export_image_text_classifier(model, text_vectorizer, path, image_size, crop=True,
                                 grayscale=False, class_names=None):
    """Exports an image + text classifier that serves raw bytes and strings.

    The serving signature `serving_default(image_bytes, caption)` takes a batch
    of encoded JPEG/PNG files (tf.string, shape (N,)) and of raw captions
    (tf.string, shape (N,)), runs the same decoding, resizing and
    tokenisation as training, and returns `probabilities` (float32),
    `class_id` (int32) and, when `class_names` is given, `class_name`.

    Args:
        model: keras.Model with inputs {"image": uint8, "text": int32}.
        text_vectorizer: the `TextVectorization` the model was trained with.
        path: str. Target SavedModel folder (written atomically).
        image_size: (height, width) the model takes.
        crop: bool. Center crop, as in training.
        grayscale: bool. As in training.
        class_names: list of str or None.

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> reloaded = tf.saved_model.load(path)  # doctest: +SKIP
        >>> reloaded.signatures["serving_default"](
        ...     image_bytes=tf.constant([png_bytes]), caption=tf.constant(["a red apple"]))
    """
    image_size = tuple(int(s) for s in image_size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None], tf.string, name="caption")])
    def serve(image_bytes, caption):
        images = preprocess_image_batch(image_bytes, image_size, crop, grayscale)
        tokens = tf.cast(text_vectorizer(caption), tf.int32)
        probabilities = model({"image": images, "text": tokens}, training=False)
        return classifier_outputs(probabilities, class_names)

    return write_archive(path, {"serving_default": serve}, track=[model, text_vectorizer])
