"""SavedModel export with serving signatures on raw inputs.

Exports are written into a temporary folder beside the target and renamed into
place only when complete, so a failed export leaves no half-written SavedModel,
and an existing export at the target survives a failed overwrite. The error of
a failed export (a full disk: an `OSError` or TensorFlow's
`ResourceExhaustedError`) names the target, not the temporary folder. The target
must be new, an empty folder or an earlier SavedModel (`check_export_path`):
anything else there, an earlier SavedModel with files of your own added
included, is refused, not replaced.
"""

import contextlib
import os

import keras
import numpy as np
import tensorflow as tf

from mmtl_tf.data.image import preprocess_image_batch
from mmtl_tf.files import (SAVED_MODEL_ENTRIES, atomic_directory, check_replaceable,
                           keep_added, message_naming_target, nested_saved_model, user_path)
from mmtl_tf.errors import check_choice
from mmtl_tf.layers.log_mel_spectrogram import LogMelSpectrogram


def check_export_path(path):
    """Raises a `ValueError` unless `path` may be replaced by a SavedModel: it
    must be new, an empty folder or a SavedModel (holds saved_model.pb) with
    nothing but what an export writes (`mmtl_tf.files.SAVED_MODEL_ENTRIES`,
    and `tokens_only/` of `export_text_classifier`), files that file managers
    write (`.DS_Store`, ...: `mmtl_tf.files.entries`) aside; a file or folder
    of your own in it (e.g. TensorFlow Serving's `assets.extra/`) would be
    deleted.
    A folder this process may not change is refused too."""
    check_replaceable(path, "saved_model.pb", "SavedModel", own=SAVED_MODEL_ENTRIES,
                      nested=nested_saved_model, option="another export folder")


@contextlib.contextmanager
def _quiet_tensorflow_info():
    """TensorFlow's Python logger at WARNING or above for the block: saving
    logs "INFO:tensorflow:Assets written to: .../.NAME.tmp-1a2b3c4d/assets"
    where its level is INFO (a notebook's), naming the staging folder the
    user never sees (twice per export in notebooks 03-05)."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    if level < logging.WARNING:  # (NOTSET, DEBUG, INFO)
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _atomic_export(path, write):
    """`mmtl_tf.files.atomic_directory(path, write)` for a SavedModel: an error
    of `write` that names the temporary folder `.NAME.tmp-…` it writes into
    (TensorFlow's, e.g. `ResourceExhaustedError` or `FailedPreconditionError`
    from `tf.saved_model.save`, or another whose only argument is its message)
    is raised as an error of the same type that names `path` instead (and says
    that an earlier `path` is unchanged), with the original as its `__cause__`
    and its traceback; `atomic_directory` itself does so for an `OSError`.
    Nothing half-written is left either way. What was put into `path` while
    the export ran (`check_export_path` checked it before) and no export
    writes is not deleted: it is kept in a folder beside the new SavedModel,
    and a `mmtl_tf.errors.KeptFilesWarning` names it."""
    target = os.path.abspath(os.fspath(path))
    existed = os.path.lexists(target)

    def write_naming_target(tmp):
        try:
            with _quiet_tensorflow_info():
                write(tmp)
        except OSError:
            raise
        except Exception as e:
            renamed = _naming_target(e, tmp, target, existed)
            if renamed is None:
                raise
            # With the original's traceback, so that the CLI still names the
            # file that raised it (e.g. TensorFlow's file_io.py).
            raise renamed.with_traceback(e.__traceback__) from e

    return atomic_directory(path, write_naming_target, keep_replaced=lambda old: keep_added(
        path, old, SAVED_MODEL_ENTRIES, nested_saved_model, "export", "this export finished",
        "SavedModel"))


def _naming_target(error, tmp, path, existed):
    """`error` (no `OSError`) as an error of the same type whose message names
    `path` instead of `tmp`, or None if its message does not name `tmp` or its
    type cannot be made again with another message."""
    if isinstance(error, tf.errors.OpError):
        message = message_naming_target(error.message or "", tmp, path, existed)
        if message is None:
            return None
        # OpError's own __init__: its subclasses take no error_code.
        renamed = type(error).__new__(type(error))
        tf.errors.OpError.__init__(renamed, error.node_def, error.op, message,
                                   error.error_code, error.experimental_payloads)
        return renamed
    message = message_naming_target(str(error), tmp, path, existed)
    if message is None or error.args != (str(error),):
        return None
    try:
        return type(error)(message)
    except Exception:  # a type that takes other arguments: left as it is
        return None


def write_archive(path, endpoints, track=()):
    """Writes a SavedModel with the given endpoints, atomically.

    Args:
        path: str. Target folder.
        endpoints: dict name → `tf.function` with an `input_signature`. The first
            one is also exported as `serving_default` unless a key says so.
        track: list of Keras layers/models whose variables and lookup tables the
            endpoints use.
    """
    path = user_path(path)
    check_export_path(path)
    archive = keras.export.ExportArchive()
    for item in track:
        if isinstance(item, keras.layers.TextVectorization) and not item.built:
            # Adapted but never called (e.g. exported right after
            # make_text_vectorizer): Keras refuses to track an unbuilt layer.
            item(tf.constant([""]))
        archive.track(item)
    endpoints = dict(endpoints)
    if "serving_default" not in endpoints:
        endpoints = {"serving_default": next(iter(endpoints.values())), **endpoints}
    for name, fn in endpoints.items():
        try:
            archive.add_endpoint(name, fn)  # traces `fn`
        except (ValueError, TypeError) as e:
            # A check that failed while tracing: autograph put "in user code:"
            # and the frames of the serving function before its message.
            cause = getattr(getattr(e, "ag_error_metadata", None), "cause_message", None)
            if cause and type(e) in (ValueError, TypeError):
                prefix = f"{type(e).__name__}: "
                raise type(e)(cause[len(prefix):] if cause.startswith(prefix)
                              else cause) from None
            raise
    return _atomic_export(path, lambda tmp: archive.write_out(tmp, verbose=False))


def call_on_batch(call, inputs):
    """`call(inputs)` for a batch of any size, an empty one included.

    An empty batch is padded with one all-zero example and the outputs are cut
    back to the real batch (here: none), instead of running the model on zero
    examples: TensorFlow 2.21's oneDNN `Conv2D` kernel returns its input
    unchanged for an empty batch (`tf.nn.conv2d(tf.zeros([0, 16, 16, 3]), w,
    1, "SAME")` has shape (0, 16, 16, 3)), so every convolutional model failed
    on one. Outputs must have the batch as their first axis.
    """
    count = tf.shape(tf.nest.flatten(inputs)[0])[0]
    pad = tf.maximum(1 - count, 0)

    def padded(x):
        return tf.concat([x, tf.zeros(tf.concat([[pad], tf.shape(x)[1:]], 0), x.dtype)], 0)

    outputs = call(tf.nest.map_structure(padded, inputs))
    return tf.nest.map_structure(lambda y: y[:count], outputs)


def check_vocabulary_fits(model, text_vectorizer):
    """A `ValueError` (before anything is written) when `text_vectorizer`, a
    `TextVectorization`, makes token ids that the model's one `Embedding`
    cannot look up: a vectorizer adapted with a larger `vocab_size` than the
    model was built with. Otherwise only requests whose captions hold one
    of the extra words failed ("indices[0,0] = 56 is not in [0, 20)")."""
    if not isinstance(text_vectorizer, keras.layers.TextVectorization):
        return
    embeddings = [layer for layer in model._flatten_layers(include_self=False)
                  if isinstance(layer, keras.layers.Embedding)]
    if len(embeddings) != 1:
        return  # no single text embedding to compare with
    size, takes = text_vectorizer.vocabulary_size(), embeddings[0].input_dim
    if size > takes:
        raise ValueError(
            f"the text vectorizer has {size} tokens (ids 0..{size - 1}) but the model's "
            f"Embedding {embeddings[0].name!r} takes ids below {takes} (vocab_size={takes}); "
            "use the vectorizer the model was trained with, or build the model "
            f"with vocab_size={size}.")


def check_sequence_length_fits(model, text_vectorizer, modality="text"):
    """A `ValueError` (before anything is written) when `text_vectorizer`, a
    `TextVectorization` or a `BertPreprocessor`, makes another number of
    tokens per text than the
    model's text tower takes (it failed in tracing with Keras' "expected
    shape=(None, 8), found shape=(None, 12)", naming no argument)."""
    if not hasattr(model, "tower"):
        return
    try:
        specs = keras.tree.flatten(model.tower(modality).inputs)
    except (ValueError, KeyError, AttributeError):
        return
    if isinstance(text_vectorizer, keras.layers.TextVectorization):
        made = getattr(text_vectorizer, "_output_sequence_length", None)
    else:  # a BertPreprocessor: token ids and padding mask of one length
        made = getattr(text_vectorizer, "sequence_length", None)
    lengths = {spec.shape[-1] for spec in specs}
    if made is None or len(lengths) != 1 or None in lengths:
        return
    if int(made) != int(lengths.pop()):
        raise ValueError(f"the text vectorizer makes {made} tokens per text, where the model's "
                         f"{modality} tower takes {specs[0].shape[-1]}; use the vectorizer the "
                         "model was trained with (its sequence_length).")


def check_class_names(class_names, num_classes, what="classes", warn=True):
    """`class_names` as a list, or a `ValueError` unless it is None or a list
    (tuple) of str with one name per class (checked when exporting, before
    anything is written: a wrong count would only fail at serving time); a
    name given twice is a warning."""
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or not all(
            isinstance(name, str) for name in class_names):
        raise ValueError(f"class_names must be a list of str (one per class), got "
                         f"{class_names!r}.")
    class_names = list(class_names)
    repeated = sorted({name for name in class_names if class_names.count(name) > 1})
    if repeated and warn:  # (ImageNet's own names repeat "crane" and "maillot")
        import warnings

        warnings.warn(f"class_names names {', '.join(map(repr, repeated))} more than once: "
                      "the served class_name cannot tell those classes apart (class_id "
                      "can); make the names unique, e.g. 'crane (bird)'.", UserWarning,
                      stacklevel=3)
    if num_classes is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names but the model has "
                         f"{num_classes} {what}; pass one name per class, in class-id "
                         "order.")
    return class_names


def check_image_input_fits(input_shape, image_size, grayscale=False, what="the model",
                           grayscale_option=True):
    """A `ValueError` before anything is written when `image_size` or
    `grayscale` disagree with the image input that `what` declares
    (`input_shape`: (batch, height, width, channels); unknown dimensions fit
    anything). They failed inside the serving function's tracing, as a Keras
    shape error ("expected shape=(None, 32, 32, 3), found shape=(None, 64,
    64, 3)") that named no argument."""
    if input_shape is None or len(input_shape) != 4:
        return
    height, width, channels = tuple(input_shape)[1:]
    if (height, width) != (None, None) and (
            height not in (None, image_size[0]) or width not in (None, image_size[1])):
        size = (height or image_size[0], width or image_size[1])
        raise ValueError(f"image_size={image_size} but {what} takes images of "
                         f"{height or 'any'} x {width or 'any'} pixels (input shape "
                         f"{tuple(input_shape)}); pass image_size={size}.")
    made = 1 if grayscale else 3
    if channels is not None and channels != made:
        if not grayscale_option:  # an export without a grayscale argument
            raise ValueError(f"this export serves 3-channel (RGB) images but {what} takes "
                             f"{channels} channel(s) (input shape {tuple(input_shape)}).")
        raise ValueError(f"grayscale={bool(grayscale)} makes {made}-channel images but {what} "
                         f"takes {channels} channel(s) (input shape {tuple(input_shape)}); "
                         f"pass grayscale={channels == 1}.")


def _image_input_shape(model, key="image"):
    """The shape of `model`'s image input (its only input, or `key` of a
    dict of inputs), or None."""
    inputs = getattr(model, "input", None)
    if isinstance(inputs, dict):
        inputs = inputs.get(key)
    return getattr(inputs, "shape", None)


def check_output_names(model, class_names, multilabel=False):
    """`check_class_names` against `model`'s output width before tracing (a
    wrong count failed inside the serving function's tracing, under four
    autograph frames), for a model with one output or a `class` output."""
    output = getattr(model, "output", None)
    if isinstance(output, dict):
        output = output.get("class")
    if class_names is None or output is None or isinstance(output, (list, tuple)):
        return
    width = output.shape[-1]
    if width is None:
        return
    if multilabel:
        check_class_names(class_names, width, "multi-label outputs")
    else:
        check_classifier_names(class_names, width)


def check_classifier_names(class_names, width, warn=True):
    """`check_class_names` for a classifier whose output is `width` wide:
    one name per softmax output, two for a single sigmoid output."""
    return check_class_names(
        class_names, 2 if width == 1 else width,
        "classes (one sigmoid output: class 0 and class 1)" if width == 1 else "classes",
        warn=warn)


def classifier_outputs(probabilities, class_names):
    """Serving outputs of a classifier: probabilities, class id and class name."""
    probabilities = tf.cast(probabilities, tf.float32)
    # Not warned again: the exports check the names before tracing, and the
    # serving functions are traced more than once (three warnings per export).
    class_names = check_classifier_names(class_names, probabilities.shape[-1], warn=False)
    if probabilities.shape[-1] == 1:
        class_id = tf.cast(probabilities[:, 0] > 0.5, tf.int32)
    else:
        class_id = tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)
    outputs = {"probabilities": probabilities, "class_id": class_id}
    if class_names is not None:
        outputs["class_name"] = tf.gather(tf.constant(class_names), class_id)
    return outputs


def checked(checks, *tensors):
    """`tensors` that only exist after the assertion ops `checks` passed.

    In a graph, an assertion that no later op depends on may run after the
    op it guards (which then fails with its own, obscure message)."""
    with tf.control_dependencies(checks):
        out = tuple(tf.identity(t) for t in tensors)
    return out if len(out) > 1 else out[0]


def same_count(**inputs):
    """The inputs (in order), once they are known to hold as many items;
    otherwise the request fails naming them."""
    (first, a), *others = inputs.items()
    checks = [tf.debugging.assert_equal(
        tf.shape(a)[0], tf.shape(b)[0],
        message=f"{first} and {name} must hold the same number of items")
        for name, b in others]
    return checked(checks, *inputs.values())


def valid_tokens(token_ids, padding_mask, vocabulary_size):
    """`(token_ids, padding_mask)` of a served batch once every id is in
    [0, vocabulary_size) and every mask value is 0 or 1; otherwise the
    request fails with an `InvalidArgumentError` that gives the rows (the
    positions in the batch). Before, a negative id was served as the id
    counted from the vocabulary's end (Keras' `take` wraps them), an id past
    the end failed in the embedding's gather naming no row (and is read as
    zeros on a GPU), and a mask of 2 counted as 1."""
    bad_ids = tf.reduce_any(tf.logical_or(token_ids < 0, token_ids >= vocabulary_size), axis=1)
    bad_mask = tf.reduce_any(tf.logical_and(padding_mask != 0, padding_mask != 1), axis=1)
    return checked([
        tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad_ids)), [
            f"token_ids: ids outside [0, {vocabulary_size}) (the tokenizer's vocabulary) at "
            "these positions of the batch:", tf.where(bad_ids)[:, 0]], summarize=20),
        tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad_mask)), [
            "padding_mask: values other than 0 and 1 at these positions of the batch:",
            tf.where(bad_mask)[:, 0]], summarize=20)], token_ids, padding_mask)


def _shape_text(shape):
    """A graph string "(3, 37)", "(3,)" or "()" of an int32 shape vector."""
    text = tf.strings.reduce_join(tf.strings.as_string(shape), separator=", ")
    text = tf.where(tf.equal(tf.size(shape), 1), text + ",", text)
    return "(" + text + ")"


def batch_of(name, x, shape, message=None):
    """`x` once a request's `x` is known to have `shape` ((None,) or (None,
    sequence_length): a batch of N items); otherwise the request fails with an
    `InvalidArgumentError` naming `name`, the expected shape and the shape
    received (`message`, if given, says what is expected instead; the shape
    received follows it).

    A loaded signature does not check a request against its spec's shape: a
    scalar, a (1, 1) array or token ids of another length reached the ops
    and failed there with messages naming none of it ("slice index 0 of
    dimension 0 out of bounds", "Incompatible shapes: [1,32,16] vs.
    [1,37,16]"), or were served (a scalar or 2-D text). An empty batch (0,)
    or (0, sequence_length) passes. Not for XLA-compiled functions
    (`ParseTensor` has no XLA kernel); the serving signatures are not compiled."""
    shape = [None if s is None else int(s) for s in shape]
    # The request's shape, as a vector of statically unknown length: TensorFlow's
    # graph optimizer folds `tf.rank(x)`, the raw `Rank` op and the size of
    # `tf.shape(x)` alike into the spec's rank, for a request of any rank.
    actual = tf.io.parse_tensor(tf.io.serialize_tensor(tf.shape(x)), tf.int32)
    ok = tf.equal(tf.size(actual), len(shape))
    fixed = [(i, s) for i, s in enumerate(shape) if s is not None]
    if fixed:
        # Padded, so that a request of lower rank can be indexed too.
        padded = tf.concat([actual, tf.zeros([len(shape)], tf.int32)], 0)
        ok = tf.logical_and(ok, tf.reduce_all(tf.equal(
            tf.gather(padded, [i for i, _ in fixed]), [s for _, s in fixed])))
    expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + \
        ("," if len(shape) == 1 else "") + ")"
    single = expected.replace("N", "1", 1)
    message = (message or f"{name} must be a batch of shape {expected}, one row per item "
               f"(a single item has shape {single})") + "; got shape "
    # The predicate waits for the check too: the cond's other branch depends on
    # the predicate alone, and ran (an empty batch) while the check failed, so
    # that the request failed with another op's error when that was quicker.
    x, ok = checked([tf.debugging.Assert(ok, [message + _shape_text(actual)])], x, ok)
    # Control dependencies order ops when they run, but the graph's shape
    # functions see the request's real shape before anything runs: the cond
    # hides it from the ops below. Its other branch never runs.
    empty = [0 if s is None else s for s in shape]
    x = tf.cond(ok, lambda: x, lambda: tf.zeros(empty, x.dtype))
    x.set_shape(shape)
    return x


def present_class_names(present, class_names, separator="|"):
    """(N,) tf.string: the names of each row's present classes joined by
    `separator` (as in labels files: `"dog|person"`), `""` for none."""
    # (Checked and warned about before tracing, by the export: see
    # classifier_outputs.)
    class_names = check_class_names(class_names, present.shape[-1], "multi-label outputs",
                                    warn=False)
    names = tf.broadcast_to(tf.constant(class_names), tf.shape(present))
    return tf.strings.reduce_join(tf.ragged.boolean_mask(names, present), axis=1,
                                  separator=separator)


def export_image_text_classifier(model, text_vectorizer, path, image_size, crop=True,
                                 grayscale=False, class_names=None):
    """Exports an image + text classifier that serves raw bytes and strings.

    The serving signature `serving_default(image_bytes, caption)` takes a batch
    of encoded JPEG/PNG files (tf.string, shape (N,)) and of raw captions
    (tf.string, shape (N,)), runs the same decoding, resizing and
    tokenisation as training, and returns `probabilities` (float32),
    `class_id` (int32) and, when `class_names` is given, `class_name`. A
    request whose `image_bytes` or `caption` is not of shape (N,) (e.g. a
    scalar or (1, 1)), or whose two inputs hold different numbers of items,
    fails with an `InvalidArgumentError` naming the input and the shape
    (`batch_of`, `same_count`).

    Args:
        model: keras.Model with inputs {"image": uint8, "text": int32}.
        text_vectorizer: the `TextVectorization` the model was trained with.
        path: str. Target SavedModel folder (written atomically).
        image_size: (height, width) the model takes.
        crop: bool. Center crop, as in training.
        grayscale: bool. As in training.
        class_names: list of str or None. One name per class in class-id
            order (two for a single sigmoid output; one per output for a
            multi-label model); checked against the model's output width
            before anything is written (ValueError).

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> reloaded = tf.saved_model.load(path)  # doctest: +SKIP
        >>> reloaded.signatures["serving_default"](  # doctest: +SKIP
        ...     image_bytes=tf.constant([png_bytes]), caption=tf.constant(["a red apple"]))
    """
    image_size = tuple(int(s) for s in image_size)
    check_vocabulary_fits(model, text_vectorizer)
    check_image_input_fits(_image_input_shape(model), image_size, grayscale)
    check_output_names(model, class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None], tf.string, name="caption")])
    def serve(image_bytes, caption):
        image_bytes = batch_of("image_bytes", image_bytes, [None])
        caption = batch_of("caption", caption, [None])
        image_bytes, caption = same_count(image_bytes=image_bytes, caption=caption)
        images = preprocess_image_batch(image_bytes, image_size, crop, grayscale)
        tokens = tf.cast(text_vectorizer(caption), tf.int32)
        probabilities = call_on_batch(lambda x: model(x, training=False),
                                      {"image": images, "text": tokens})
        return classifier_outputs(probabilities, class_names)

    # The endpoint captures the model's variables itself; tracking the model too
    # would store every weight twice (keras issue 23553). The vectorizer's lookup
    # table must be tracked.
    return write_archive(path, {"serving_default": serve}, track=[text_vectorizer])


def _image_task(model, task):
    """`task`, checked against what `model`'s outputs say (`task_of`): only a
    one-unit sigmoid output, which reads as a binary classifier, may be
    named a one-class `"multilabel"` model. A wrong task served a
    localization model's crop or dropped `present`, without a word."""
    from mmtl_tf.models.fine_tune import head_output_layer, task_of

    detected = task_of(model)
    if task is None:
        return detected
    check_choice("task", task, ("multiclass", "multilabel", "localization"))
    if task == detected:
        return task
    last = head_output_layer(model)
    one_sigmoid = getattr(last, "activation", None) is keras.activations.sigmoid and \
        getattr(last, "units", None) == 1
    if task == "multilabel" and detected == "multiclass" and one_sigmoid:
        return task
    raise ValueError(f"task={task!r}, but {model.name!r} is a {detected} model by its outputs "
                     "(only a one-unit sigmoid output may be named a one-class 'multilabel' "
                     "model); leave task out.")


def export_image_classifier(model, path, image_size, class_names=None, crop=None,
                            threshold=0.5, task=None):
    """Exports an image model (head swap, multi-label, localization) serving raw image bytes.

    The signature `serving_default(image_bytes)` takes a batch of encoded
    JPEG/PNG/GIF/BMP/WebP files (tf.string, shape (N,)), decodes, resizes and (with
    `crop`) center-crops them in the graph with the training code, and returns:

    * one softmax/sigmoid output: `probabilities` (float32), `class_id` and,
      with `class_names`, `class_name`; for a multi-label model (several sigmoid
      outputs) `present` (bool, probability >= `threshold`) instead of the id
      and, with `class_names`, `class_name`: the present classes joined by
      `|` (`"dog|person"`; `""` for none);
    * `{"class", "box"}` outputs (localization): the same plus `box` (float32
      (N, 4) `[ymin, xmin, ymax, xmax]`, normalised).

    `image_bytes` of another shape than (N,) (a scalar, (1, 1)) fails the
    request with an `InvalidArgumentError` naming it and its shape.

    Args:
        model: keras.Model taking uint8 (N, H, W, 3).
        path: str. Target SavedModel folder (written atomically).
        image_size: (height, width) the model takes.
        class_names: list of str or None. One name per class in class-id
            order (two for a single sigmoid output; one per output for a
            multi-label model); checked against the model's output width
            before anything is written (ValueError).
        crop: bool or None. Center crop as in training. None: True, but
            False for a localization model, for which True is a
            `ValueError` (training takes its images whole, so its boxes
            are of the whole image: with the crop the served boxes were
            off by up to 0.5 of the image, without a word).
        threshold: float. Multi-label decision threshold.
        task: str or None. `"multiclass"`, `"multilabel"` or `"localization"`;
            None reads it from the model (`task_of`), which takes a
            multi-label model of one class for a binary classifier: pass
            `task="multilabel"` for one (`mmtl-tf export` passes the run's
            target). A localization model of one class (every box the same
            class) serves `box`, `class_id` 0 and `class_name`, that class,
            without `probabilities`: its class output trained on one class
            says nothing.

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> serve = tf.saved_model.load(path).signatures["serving_default"]  # doctest: +SKIP
        >>> serve(image_bytes=tf.constant([open("cat.png", "rb").read()]))["class_name"]  # doctest: +SKIP
    """
    image_size = tuple(int(s) for s in image_size)
    task = _image_task(model, task)
    multilabel = task == "multilabel"
    class_width = model.output["class"].shape[-1] if isinstance(model.output, dict) else None
    one_class_boxes = task == "localization" and class_width == 1 and (
        class_names is None or len(class_names) == 1)
    if crop is None:
        crop = task != "localization"
    elif crop and task == "localization":
        raise ValueError("crop=True for a localization model: its boxes are of the whole "
                         "image (training refuses crop=True), so served boxes would be of "
                         "the crop; leave crop out (None) or pass crop=False.")
    check_image_input_fits(_image_input_shape(model), image_size, grayscale_option=False)
    if one_class_boxes:
        class_names = None if class_names is None else check_class_names(class_names, 1,
                                                                        "classes")
    else:
        check_output_names(model, class_names, multilabel)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes):
        image_bytes = batch_of("image_bytes", image_bytes, [None])
        images = preprocess_image_batch(image_bytes, image_size, crop)
        result = call_on_batch(lambda x: model(x, training=False), images)
        if one_class_boxes:
            box = tf.cast(result["box"], tf.float32)
            outputs = {"box": box, "class_id": tf.zeros_like(box[:, 0], tf.int32)}
            if class_names is not None:
                outputs["class_name"] = tf.fill(tf.shape(box)[:1], class_names[0])
            return outputs
        if isinstance(result, dict):
            outputs = classifier_outputs(result["class"], class_names)
            outputs["box"] = tf.cast(result["box"], tf.float32)
            return outputs
        if multilabel:
            probabilities = tf.cast(result, tf.float32)
            outputs = {"probabilities": probabilities, "present": probabilities >= threshold}
            if class_names is not None:
                outputs["class_name"] = present_class_names(outputs["present"], class_names)
            return outputs
        return classifier_outputs(result, class_names)

    # The endpoint captures the model's variables itself (tracking the model too
    # would store every weight twice, keras issue 23553).
    return write_archive(path, {"serving_default": serve})


def export_text_classifier(model, preprocessor, path, class_names=None, tokens_only=True):
    """Exports a BERT-family text classifier that serves raw strings.

    Writes a SavedModel at `path` with two signatures:

    * `serving_default(text)`: raw texts (tf.string, shape (N,)); tokenization
      (the training `BertPreprocessor`: invalid UTF-8 replaced, WordPieces,
      truncation to `sequence_length`, `[CLS] … [SEP]`, padding) runs inside
      the SavedModel. **Loading this SavedModel needs the tensorflow-text ops:
      run `import tensorflow_text` before `tf.saved_model.load`** (TensorFlow
      Serving needs a build with those ops).
    * `serve_tokens(token_ids, padding_mask)`: int32 (N, sequence_length) each,
      for clients that tokenize themselves.

    A request whose `text` is not of shape (N,) (a scalar or a 2-D array), or
    whose `token_ids` or `padding_mask` is not (N, sequence_length) (1-D ids
    of one text, another length), fails with an `InvalidArgumentError`
    naming the input, the shape expected and the shape received; so does one
    whose `token_ids` and `padding_mask` hold different numbers of rows
    (before, one row of ids with three of mask was broadcast to three
    predictions), and one with an id outside [0, vocabulary size) or a mask
    value other than 0 and 1, naming the rows (`valid_tokens`).

    Both return `probabilities` (float32), `class_id` (int32) and, with
    `class_names`, `class_name`. Because a SavedModel's graph is loaded whole,
    the token signature inside it still needs tensorflow-text to load; with
    `tokens_only=True` a second SavedModel at `path/tokens_only` holds only the
    token signature (as `serving_default`) and no tensorflow-text ops, for
    runtimes without them. Everything is written to a temporary folder and
    renamed into place.

    Args:
        model: keras.Model with inputs `{"token_ids", "padding_mask"}` (e.g.
            `mmtl_tf.models.build_text_classifier`).
        preprocessor: `mmtl_tf.data.BertPreprocessor` used in training.
        path: str. Target SavedModel folder.
        class_names: list of str or None. One name per class in class-id
            order (two for a single sigmoid output; one per output for a
            multi-label model); checked against the model's output width
            before anything is written (ValueError).
        tokens_only: bool. Also write `path/tokens_only`.

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> import tensorflow as tf, tensorflow_text  # doctest: +SKIP
        >>> serve = tf.saved_model.load(path).signatures["serving_default"]  # doctest: +SKIP
        >>> serve(text=tf.constant(["Computers are useless."]))["class_name"]  # doctest: +SKIP
    """
    path = user_path(path)
    check_export_path(path)
    length = model.input["token_ids"].shape[1]
    if length is not None and length != preprocessor.sequence_length:
        raise ValueError(f"the model takes {length} token ids per text but the "
                         f"preprocessor makes {preprocessor.sequence_length}.")
    length = length or preprocessor.sequence_length
    check_output_names(model, class_names)
    token_spec = [tf.TensorSpec([None, length], tf.int32, name="token_ids"),
                  tf.TensorSpec([None, length], tf.int32, name="padding_mask")]

    def predict(token_ids, padding_mask):
        token_ids, padding_mask = same_count(token_ids=token_ids, padding_mask=padding_mask)
        probabilities = model({"token_ids": token_ids, "padding_mask": padding_mask},
                              training=False)
        return classifier_outputs(probabilities, class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(text):
        inputs = preprocessor(batch_of("text", text, [None]))
        return predict(inputs["token_ids"], inputs["padding_mask"])

    vocabulary_size = preprocessor.vocabulary_size

    @tf.function(input_signature=token_spec)
    def serve_tokens(token_ids, padding_mask):
        token_ids, padding_mask = valid_tokens(
            batch_of("token_ids", token_ids, [None, length]),
            batch_of("padding_mask", padding_mask, [None, length]), vocabulary_size)
        return predict(token_ids, padding_mask)

    # The endpoints capture the model's variables themselves. `archive.track(model)`
    # would store every weight a second time (keras issue 23553: 2x the size on
    # disk and in memory); the tokenizer holds no variables or lookup tables.
    def write(tmp):
        archive = keras.export.ExportArchive()
        archive.add_endpoint("serving_default", serve_text)
        archive.add_endpoint("serve_tokens", serve_tokens)
        archive.write_out(tmp, verbose=False)
        if tokens_only:
            plain = keras.export.ExportArchive()
            plain.add_endpoint("serving_default", tf.function(
                serve_tokens.python_function, input_signature=token_spec))
            plain.write_out(os.path.join(tmp, "tokens_only"), verbose=False)

    return _atomic_export(path, write)


def served_embeddings(model, modality, inputs):
    """`{"embeddings": float32 (N, D)}` of a served batch of a dual
    encoder's preprocessed `modality` inputs (an endpoint's output)."""
    embeddings = call_on_batch(lambda x: model.encode(modality, x, training=False), inputs)
    return {"embeddings": tf.cast(embeddings, tf.float32)}


def export_dual_encoder(model, path, preprocessors, track=(), extra_endpoints=None):
    """Exports a dual encoder with one raw-input signature per modality.

    For each modality m of `model` (a `mmtl_tf.models.DualEncoder`) the
    SavedModel gets a signature `encode_<m>` that takes the raw input
    described by `preprocessors[m]`, runs its preprocessing in the graph,
    and returns `{"embeddings": float32 (N, D)}` (the same as
    `model.encode_<m>`: unit length, except the zero vector that a
    `TextEncoder` tower gives a text of no tokens, see
    `export_image_text_dual_encoder`). The first modality's signature is also
    `serving_default`. Cosine similarity of an exported image and text
    embedding is their dot product. A request whose input has another rank
    than its spec, or another size where the spec fixes one (e.g. a scalar
    or (1, 1) `text` for a (None,) spec), fails with an
    `InvalidArgumentError` naming the input and the shape received; a spec
    of unknown rank (`waveform_preprocessor`'s) is left to its preprocessing.

    Args:
        model: `mmtl_tf.models.DualEncoder`.
        path: str. Target SavedModel folder (written atomically).
        preprocessors: dict modality → (`tf.TensorSpec` of the raw input,
            callable raw → the tower's input). E.g. for text
            `(tf.TensorSpec([None], tf.string, name="text"),
            lambda s: tf.cast(vectorizer(s), tf.int32))`.
        track: list of layers holding lookup tables or variables that the
            preprocessing uses (e.g. a `TextVectorization`).
        extra_endpoints: dict name → `tf.function` with an `input_signature`,
            or None. Further signatures (e.g. one that reports the audio
            sample rate).

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> serve = tf.saved_model.load(path).signatures["encode_text"]  # doctest: +SKIP
        >>> serve(text=tf.constant(["grinning face"]))["embeddings"].shape  # doctest: +SKIP
        TensorShape([1, 256])
    """
    missing = [m for m in model.modalities if m not in preprocessors]
    if missing:
        raise ValueError(f"no preprocessor for modality {', '.join(map(repr, missing))}; "
                         f"give one for each of {', '.join(map(repr, model.modalities))}.")
    def make_endpoint(modality, spec, preprocess):
        @tf.function(input_signature=[spec])
        def encode(raw):
            if spec.shape.rank is not None:
                raw = batch_of(spec.name or modality, raw, spec.shape)
            return served_embeddings(model, modality, preprocess(raw))

        return encode

    endpoints = {f"encode_{m}": make_endpoint(m, *preprocessors[m]) for m in model.modalities}
    first = endpoints[f"encode_{model.modalities[0]}"]
    # The endpoints capture the model's variables; tracking the model as well
    # would store every weight twice (keras issue 23553).
    return write_archive(path, {"serving_default": first, **endpoints,
                                **(extra_endpoints or {})}, track=list(track))


def image_bytes_preprocessor(image_size, crop=True, grayscale=False):
    """(spec, fn) for `export_dual_encoder`: encoded image files → uint8 pixels.

    Args:
        image_size: (height, width) the image tower takes.
        crop: bool. Center crop after an aspect-preserving resize.
        grayscale: bool.

    Example:
        >>> spec, fn = mmtl_tf.export.image_bytes_preprocessor((64, 64))  # doctest: +SKIP
        >>> fn(tf.constant([png_bytes])).shape  # doctest: +SKIP
        TensorShape([1, 64, 64, 3])
    """
    image_size = tuple(int(s) for s in image_size)
    spec = tf.TensorSpec([None], tf.string, name="image_bytes")
    return spec, lambda raw: preprocess_image_batch(raw, image_size, crop, grayscale)


def text_preprocessor(tokenizer):
    """(spec, fn) for `export_dual_encoder`: raw strings → the text tower's input.

    Args:
        tokenizer: a `keras.layers.TextVectorization` (token ids, cast to
            int32) or any callable taking a tf.string batch (e.g.
            `mmtl_tf.data.BertPreprocessor`, giving `{"token_ids",
            "padding_mask"}`).

    Example:
        >>> spec, fn = mmtl_tf.export.text_preprocessor(vectorizer)  # doctest: +SKIP
        >>> fn(tf.constant(["grinning face"])).dtype  # doctest: +SKIP
        tf.int32
    """
    spec = tf.TensorSpec([None], tf.string, name="text")
    if isinstance(tokenizer, keras.layers.TextVectorization):
        return spec, lambda raw: tf.cast(tokenizer(raw), tf.int32)
    return spec, tokenizer


def export_image_text_dual_encoder(model, text_tokenizer, path, image_size, crop=True,
                                   grayscale=False):
    """Exports an image–text dual encoder serving raw image bytes and raw strings.

    Signatures: `encode_image(image_bytes)` (tf.string (N,): encoded
    JPEG/PNG/GIF/BMP/WebP files, decoded and resized in the graph as in training)
    and `encode_text(text)` (tf.string (N,): tokenised with the training
    vocabulary), each returning `embeddings` float32 (N, D), unit length.
    `serving_default` is `encode_image`.

    Exception, as in `model.encode_text`: a caption that the
    `TextVectorization` turns into no token at all (`""`; with the default
    word split also one of only whitespace or punctuation, `" "`, `"!!!"`,
    which standardisation strips; with `remove_stopwords=True` one of only
    stop words) is all padding ids, which a `TextEncoder` with `mask_zero=True`
    (the default) maps to zeros and the bias-free projection keeps at zero:
    its embedding is the zero vector (norm 0), whose cosine similarity (dot
    product) with every embedding is 0. A caption of only out-of-vocabulary
    words is `[UNK]` tokens and gets a unit vector like any other.

    Args:
        model: `mmtl_tf.models.DualEncoder` with modalities image and text.
        text_tokenizer: the `TextVectorization` (or BERT preprocessor) used in
            training.
        path: str. Target folder (written atomically).
        image_size: (height, width) the image tower takes.
        crop: bool. Center crop, as in training.
        grayscale: bool. As in training.

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> m = tf.saved_model.load(path)  # doctest: +SKIP
        >>> img = m.signatures["encode_image"](image_bytes=tf.constant([png]))["embeddings"]  # doctest: +SKIP
        >>> txt = m.signatures["encode_text"](text=tf.constant(["cat face"]))["embeddings"]  # doctest: +SKIP
        >>> similarity = tf.matmul(img, txt, transpose_b=True)  # doctest: +SKIP
    """
    from mmtl_tf.data.image import check_image_size

    # image_size=32 and text_tokenizer=None failed with TypeErrors ("'int'
    # object is not iterable", "'NoneType' object is not callable").
    image_size = check_image_size(image_size)
    if not callable(text_tokenizer):
        raise TypeError(f"text_tokenizer must be the tokenizer the model was trained with (a "
                        f"TextVectorization or a BERT preprocessor); got "
                        f"{type(text_tokenizer).__name__}.")
    track = [text_tokenizer] if isinstance(text_tokenizer, keras.layers.Layer) else []
    check_vocabulary_fits(model, text_tokenizer)
    check_sequence_length_fits(model, text_tokenizer)
    # (A wrong image_size failed in tracing with Keras' "Input 0 with name
    # 'image' ... expected shape=(None, 32, 32, 3)", naming no argument.)
    check_image_input_fits(_image_input_shape(model), image_size, grayscale,
                           what="the image tower")
    return export_dual_encoder(
        model, path,
        {"image": image_bytes_preprocessor(image_size, crop, grayscale),
         "text": text_preprocessor(text_tokenizer)},
        track=track)


def export_image_embedding(model, path, image_size, crop=True, grayscale=False):
    """Exports an image embedding model (Siamese / triplet tower) on raw bytes.

    Signature `encode_image(image_bytes)` (also `serving_default`): tf.string
    (N,) encoded images → `embeddings` float32 (N, D); `image_bytes` of
    another shape (a scalar, (1, 1)) fails the request naming it.

    Args:
        model: keras.Model taking uint8 images (N, H, W, C).
        path: str. Target folder (written atomically).
        image_size: (height, width).
        crop: bool.
        grayscale: bool.

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> m = tf.saved_model.load(path)  # doctest: +SKIP
        >>> m.signatures["encode_image"](image_bytes=tf.constant([png]))["embeddings"]  # doctest: +SKIP
    """
    check_image_input_fits(_image_input_shape(model), tuple(int(s) for s in image_size),
                           grayscale)
    spec, preprocess = image_bytes_preprocessor(image_size, crop, grayscale)

    @tf.function(input_signature=[spec])
    def encode_image(image_bytes):
        image_bytes = batch_of("image_bytes", image_bytes, [None])
        embeddings = call_on_batch(lambda x: model(x, training=False),
                                   preprocess(image_bytes))
        return {"embeddings": tf.cast(embeddings, tf.float32)}

    return write_archive(path, {"serving_default": encode_image,
                                "encode_image": encode_image})


def export_matching_network(model, path, image_size, crop=True, grayscale=False):
    """Exports a matching network that classifies raw query images by a raw support set.

    Signature `classify(support_image_bytes, support_labels, query_image_bytes)`
    (also `serving_default`): one episode — support images (tf.string (S,)),
    their labels (int32 (S,), 0..N-1) and query images (tf.string (Q,)) →
    `probabilities` float32 (Q, N) and `class_id` int32 (Q,). Any N, any
    number of shots. An input that is not 1-D (a scalar, (1, 1)) fails the
    request with an `InvalidArgumentError` naming it and its shape.

    Args:
        model: the model of `mmtl_tf.models.build_matching_network`.
        path: str. Target folder (written atomically).
        image_size: (height, width).
        crop: bool.
        grayscale: bool.

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> classify = tf.saved_model.load(path).signatures["classify"]  # doctest: +SKIP
        >>> classify(support_image_bytes=tf.constant(support_pngs),  # doctest: +SKIP
        ...          support_labels=tf.constant([0, 1, 2, 3, 4]),
        ...          query_image_bytes=tf.constant(query_pngs))["class_id"]

    References:
        Vinyals et al. 2016, "Matching Networks for One Shot Learning".
    """
    image_size = tuple(int(s) for s in image_size)
    support = _image_input_shape(model, "support")  # (batch, shots, height, width, channels)
    if support is not None and len(support) == 5:
        check_image_input_fits((None, *tuple(support)[2:]), image_size, grayscale,
                               what="the matching network")

    def preprocess(image_bytes, name):
        return preprocess_image_batch(image_bytes, image_size, crop, grayscale, name=name)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="support_image_bytes"),
        tf.TensorSpec([None], tf.int32, name="support_labels"),
        tf.TensorSpec([None], tf.string, name="query_image_bytes")])
    def classify(support_image_bytes, support_labels, query_image_bytes):
        support_image_bytes = batch_of("support_image_bytes", support_image_bytes, [None])
        support_labels = batch_of("support_labels", support_labels, [None])
        query_image_bytes = batch_of("query_image_bytes", query_image_bytes, [None])
        support_image_bytes, support_labels = same_count(
            support_image_bytes=support_image_bytes, support_labels=support_labels)
        support_image_bytes, support_labels = checked([
            tf.debugging.assert_positive(tf.size(support_labels),
                                         message="the support set is empty"),
            tf.debugging.assert_non_negative(
                support_labels, message="support_labels must be class numbers 0, 1, ..., N-1")],
            support_image_bytes, support_labels)
        depth = tf.reduce_max(support_labels) + 1
        support_image_bytes, support_labels = checked([tf.debugging.assert_positive(
            tf.math.bincount(support_labels, minlength=depth),
            message="support_labels must use every class number 0, 1, ..., N-1 (a number "
                    "below the largest has no support image)")],
            support_image_bytes, support_labels)
        support = preprocess(support_image_bytes, "support_image_bytes")[None]
        one_hot = tf.one_hot(support_labels, depth, dtype=tf.float32)[None]
        # `call_on_batch`: an empty query batch failed in the model's
        # convolutions ("Matrix size-incompatible: In[0]: [0,3], ...").
        probabilities = call_on_batch(lambda queries: model({
            "support": support, "support_labels": one_hot, "queries": queries[None]},
            training=False)[0], preprocess(query_image_bytes, "query_image_bytes"))
        probabilities = tf.cast(probabilities, tf.float32)
        return {"probabilities": probabilities,
                "class_id": tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)}

    return write_archive(path, {"serving_default": classify, "classify": classify})


def waveform_preprocessor(num_samples, trim=True, top_db=40.0, min_samples=0, floor_db=-70.0):
    """(spec, fn) for `export_dual_encoder`: raw float32 waveforms → the audio tower's input.

    The signature input is `waveform`, float32 (N, samples): mono audio in
    [-1, 1] at the rate the model was trained on, clips of different lengths
    zero-padded at the end. In the graph each row is trimmed of leading and
    trailing silence exactly as the training pipeline's librosa step does
    (`mmtl_tf.data.trim_and_crop_batch`) and centre-cropped or zero-padded
    to `num_samples`, as evaluation clips are. A request whose waveform is
    not (N, samples) (e.g. a single 1-D clip, or stereo (N, samples, 2)),
    has no samples ((N, 0)), or holds a NaN or inf sample fails with a
    message that says so (`InvalidArgumentError`); so do clips the data
    pipeline refuses (`mmtl_tf.data.audio.silent_or_short_rows`), with their
    positions in the batch: all silent (the loudest frame below `floor_db`
    dBFS; without `trim`, all zeros), or shorter than `min_samples` (one
    FFT window) up to their last non-zero sample. Before, such clips were
    embedded without a word (a clip of zeros, of 1 sample, of -120 dB noise).

    Args:
        num_samples: int. Samples the audio tower takes.
        trim: bool. Trim silence (as in training with `trim=True`).
        top_db: float. Silence threshold below the loudest frame (dB).
        min_samples: int. The shortest clip served (the front end's n_fft).
        floor_db: float. All-silent threshold (dBFS), as in training.

    Example:
        >>> spec, fn = mmtl_tf.export.waveform_preprocessor(24000)  # doctest: +SKIP
        >>> fn(tf.zeros([2, 30000])).shape  # doctest: +SKIP
        TensorShape([2, 24000])
    """
    from mmtl_tf.data.audio import silent_or_short_rows, trim_and_crop_batch

    # Any rank: a loaded signature does not enforce its spec's shape, and
    # with (None, None) there the rank check below would be decided "2" when
    # traced, so a single 1-D clip or a stereo (N, samples, 2) batch reached
    # the trimming ops and failed there with obscure graph errors.
    spec = tf.TensorSpec(None, tf.float32, name="waveform")

    def preprocess(raw, lengths=None):
        # `batch_of`'s cond also hides a wrong shape from the ops below (a Pad
        # of a 1-D request failed in the graph's shape functions, ahead of the
        # check).
        raw = batch_of("waveform", raw, [None, None], message=(
            "waveform must be float32 (N, samples) mono audio, one row per clip (a single "
            "clip is (1, samples); average the channels of multi-channel audio)"))
        rows, samples = tf.unstack(tf.shape(raw))
        if lengths is not None:
            lengths = batch_of("lengths", lengths, [None])
            raw, lengths = same_count(waveform=raw, lengths=lengths)
            lengths = checked([tf.debugging.Assert(
                tf.reduce_all(tf.logical_and(lengths >= 0, lengths <= samples)), [
                    "lengths: the number of samples of each row, from 0 to the waveform width; "
                    "outside it at these positions of the batch:",
                    tf.where(tf.logical_or(lengths < 0, lengths > samples))[:, 0]],
                summarize=20)], lengths)
        raw = checked([tf.debugging.Assert(
            tf.logical_or(samples > 0, tf.equal(rows, 0)),
            ["waveform has no samples: its (N, 0) rows hold no audio; shape", tf.shape(raw)])],
            raw)
        # A NaN or inf sample made trimming treat the whole clip as silence.
        raw = tf.debugging.check_numerics(raw, "waveform has NaN or inf samples")
        silent, short = silent_or_short_rows(raw, min_samples, floor_db if trim else None,
                                             lengths=lengths)
        quiet = (f"the loudest frame below {floor_db:g} dBFS" if trim else "every sample 0")
        raw = checked([tf.debugging.Assert(tf.logical_not(tf.reduce_any(silent)), [
            f"waveform: all silent ({quiet}; training refuses such clips) at these "
            "positions of the batch:", tf.where(silent)[:, 0]], summarize=20)], raw)
        raw = checked([tf.debugging.Assert(tf.logical_not(tf.reduce_any(short)), [
            f"waveform: shorter than one FFT window ({int(min_samples)} samples, up to the "
            "last non-zero sample, or its length) at these positions of the batch:",
            tf.where(short)[:, 0]], summarize=20)], raw)
        return trim_and_crop_batch(raw, int(num_samples), trim=trim, top_db=float(top_db),
                                   lengths=lengths)

    return spec, preprocess


def _tower_sample_rate(front_ends, sample_rate):
    """The rate an audio export serves: its log-mel front ends' (one rate), or
    the one given, which must agree with them."""
    rates = sorted({int(layer.sample_rate) for layer in front_ends})
    if len(rates) > 1:
        raise ValueError(f"the audio tower's LogMelSpectrogram layers take different sample "
                         f"rates ({', '.join(map(str, rates))} Hz); such a tower cannot be "
                         "served one waveform.")
    if sample_rate is None:
        if not rates:
            raise ValueError("the audio tower has no LogMelSpectrogram to read its sample rate "
                             "from; pass sample_rate=, the rate the model was trained on.")
        return rates[0]
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int (Hz); got {sample_rate!r}.")
    if rates and int(sample_rate) != rates[0]:
        raise ValueError(f"sample_rate={int(sample_rate)}, but the audio tower's "
                         f"LogMelSpectrogram takes {rates[0]} Hz: clients would send audio "
                         f"at the wrong rate; pass sample_rate={rates[0]} or leave it out.")
    return int(sample_rate)


def export_audio_text_dual_encoder(model, text_tokenizer, path, sample_rate=None,
                                   trim=True, top_db=40.0, min_samples=None):
    """Exports an audio–text dual encoder serving raw waveforms and raw strings.

    Signatures:

    * `encode_audio(waveform)`: float32 (N, samples), mono, in [-1, 1], **at
      `sample_rate` Hz** (resample other audio first, e.g. with
      `mmtl_tf.data.read_audio(path, sample_rate)`); trimmed and cropped in
      the graph (see `waveform_preprocessor`); → `embeddings` float32 (N, D),
      unit length. Also `serving_default`.
    * `encode_text(text)`: tf.string (N,), tokenised with the training
      vocabulary (or BERT preprocessor: then `import tensorflow_text` before
      loading); → `embeddings` float32 (N, D), unit length except for a
      caption of no tokens (`""`, only whitespace or punctuation with the
      default word split): that is the zero vector (norm 0, cosine 0 with
      everything), as in `model.encode_text` (see
      `export_image_text_dual_encoder`); a caption of only unknown words
      gets a unit vector.
    * `audio_config()`: `sample_rate` and `num_samples` (int32 scalars), the
      rate the audio must have and the clip length the tower sees.
    * `encode_audio_lengths(waveform, lengths)`: as `encode_audio`, with
      int32 (N,) the number of samples of each row (the rest is padding).
      `encode_audio` takes a row to end at its last non-zero sample, so a
      clip that itself ends in exact digital zeros (synthesized, faded or
      edited audio) is trimmed a little differently from training's
      librosa step; with its length it is trimmed exactly as in training.

    Args:
        model: `mmtl_tf.models.DualEncoder` with modalities audio and text
            whose audio tower takes waveforms (B, num_samples).
        text_tokenizer: the `TextVectorization` (or BERT preprocessor) used in
            training.
        path: str. Target folder (written atomically).
        sample_rate: int or None. The rate the model was trained on, which
            `audio_config()` reports. None: the `sample_rate` of the audio
            tower's `LogMelSpectrogram` (an error for a tower without one);
            a rate that differs from that layer's is refused.
        trim: bool. Trim silence in the graph (as in training).
        top_db: float. Silence threshold (as in training).
        min_samples: int or None. Shorter clips are refused, as in training;
            None: the `n_fft` of the audio tower's `LogMelSpectrogram` (0
            without one).

    Returns:
        The absolute path of the SavedModel.

    Example:
        >>> m = tf.saved_model.load(path)  # doctest: +SKIP
        >>> audio = m.signatures["encode_audio"](waveform=tf.constant(waves))["embeddings"]  # doctest: +SKIP
        >>> text = m.signatures["encode_text"](text=tf.constant(["hot pepper"]))["embeddings"]  # doctest: +SKIP
        >>> similarity = tf.matmul(audio, text, transpose_b=True)  # doctest: +SKIP

    References:
        Elizalde et al. 2023 (CLAP); LAION CLAP `get_audio_embedding_from_data`.
    """
    if set(model.modalities) != {"audio", "text"}:
        raise ValueError(f"expected a dual encoder with modalities 'audio' and 'text'; got "
                         f"{', '.join(map(repr, model.modalities))}.")
    check_vocabulary_fits(model, text_tokenizer)
    audio_shape = model.tower("audio").input.shape
    if len(audio_shape) != 2:
        raise ValueError(f"the audio tower takes {tuple(audio_shape)}, not waveforms "
                         "(batch, samples); export a model built with "
                         "input_type='waveform'.")
    num_samples = int(audio_shape[1])
    front_ends = [layer for layer in model.tower("audio")._flatten_layers(include_self=False)
                  if isinstance(layer, LogMelSpectrogram)]
    sample_rate = _tower_sample_rate(front_ends, sample_rate)
    if min_samples is None:
        min_samples = max((layer.n_fft for layer in front_ends), default=0)

    @tf.function(input_signature=[])
    def audio_config():
        return {"sample_rate": tf.constant(int(sample_rate), tf.int32),
                "num_samples": tf.constant(num_samples, tf.int32)}

    spec, preprocess = waveform_preprocessor(num_samples, trim, top_db, min_samples)

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32, name="lengths")])
    def encode_audio_lengths(waveform, lengths):
        return served_embeddings(model, "audio", preprocess(waveform, lengths))

    track = [text_tokenizer] if isinstance(text_tokenizer, keras.layers.Layer) else []
    return export_dual_encoder(
        model, path, {"audio": (spec, preprocess), "text": text_preprocessor(text_tokenizer)},
        track=track, extra_endpoints={"audio_config": audio_config,
                                      "encode_audio_lengths": encode_audio_lengths})
