"""Two-phase transfer learning: train the new head, then fine-tune the top of the backbone.

Phase 1 trains only the head (backbone frozen, learning rate 1e-3). With
`cache_features=True` the frozen backbone runs once over the data and the head
trains on the stored features (a linear probe when the head has no hidden
layer): the head is a layer of the full model, so the result is the same model,
only faster. Phase 2 unfreezes the top of the backbone (BatchNorm stays frozen
for pretrained weights),
recompiles with a small learning rate (1e-5) and trains the whole model on
images. The best epoch of each phase (by validation loss) is kept.
"""

import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from mmtl_tf.errors import raise_collected_problems
from mmtl_tf.losses.classifier_losses import ClassIdCrossentropy, MultiHotCrossentropy
from mmtl_tf.metrics.average_precision import MeanAveragePrecision
from mmtl_tf.metrics.box_iou import BoxIoU
from mmtl_tf.models.head_swap_classifier import find_image_encoder, freeze, unfreeze
from mmtl_tf.training import classifier_metrics, compile_with_xla_rules

TASKS = ("multiclass", "multilabel", "localization")


def task_of(model):
    """`"multiclass"`, `"multilabel"` or `"localization"`, read from the model's outputs."""
    if isinstance(model.output, dict):
        if "box" in model.output:
            return "localization"
        raise ValueError(f"model {model.name!r} has outputs {sorted(model.output)}; expected "
                         "one probability output, or 'class' and 'box'.")
    last = head_output_layer(model)
    if getattr(last, "activation", None) is keras.activations.sigmoid and last.units > 1:
        return "multilabel"
    return "multiclass"


def head_output_layer(model):
    """The last layer of `model`'s `head` layer (or of `model` without one):
    the probability output whose activation and width `task_of` reads."""
    head = model.get_layer("head") if "head" in [l.name for l in model.layers] else model
    return head.layers[-1]


def _num_classes(model, task):
    output = model.output["class"] if task == "localization" else model.output
    return int(output.shape[-1])


def compile_for_task(model, task=None, learning_rate=None, optimizer="adam", jit_compile=None,
                     box_loss_weight=5.0):
    """Compiles a head-swap or localization model with the loss and metrics of its task.

    * `"multiclass"`: sparse categorical cross-entropy (binary for one output),
      accuracy; labels are int class ids.
    * `"multilabel"`: binary cross-entropy, `MeanAveragePrecision` (`mAP`) and
      binary accuracy; labels are multi-hot float vectors.
    * `"localization"`: cross-entropy on `class` plus `box_loss_weight` × mean
      absolute error on `box`; metrics `class_accuracy`, `box_iou` (mean IoU) and
      `box_iou@0.5` (fraction of boxes with IoU >= 0.5); targets are
      `{"class": int, "box": [ymin, xmin, ymax, xmax]}`.

    Labels of another format (one-hot vectors for a softmax, int ids for a
    multilabel model) raise a `ValueError` naming the expected one when
    training or evaluation starts (`mmtl_tf.losses.ClassIdCrossentropy`,
    `MultiHotCrossentropy`: Keras' losses plus a static shape check).

    Args:
        model: keras.Model.
        task: str or None. None reads it from the model (`task_of`).
        learning_rate: float or None. None: `head_learning_rate_for(task)`
            (1e-3; 1e-4 for localization). Used when `optimizer` is a name.
        optimizer: str or keras.optimizers.Optimizer.
        jit_compile: bool or None. None follows `mmtl_tf.runtime`.
        box_loss_weight: float. Weight of the box loss (localization).

    Returns:
        The model, compiled. A `RuntimeWarning` says if Keras turned XLA off.
    """
    task = task or task_of(model)
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not allowed; use one of {', '.join(map(repr, TASKS))}.")
    num_classes = _num_classes(model, task)
    if learning_rate is None:
        learning_rate = head_learning_rate_for(task)
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get({"class_name": optimizer,
                                          "config": {"learning_rate": learning_rate}})
    binary = num_classes == 1
    class_loss = MultiHotCrossentropy() if binary else ClassIdCrossentropy()
    class_accuracy, = classifier_metrics(["accuracy"], num_classes)  # binary or sparse
    if task == "multiclass":
        loss, metrics, weights = class_loss, [class_accuracy], None
    elif task == "multilabel":
        loss = MultiHotCrossentropy()
        metrics = [MeanAveragePrecision(num_classes), keras.metrics.BinaryAccuracy()]
        weights = None
    else:
        loss = {"class": class_loss, "box": keras.losses.MeanAbsoluteError()}
        metrics = {"class": [class_accuracy], "box": [BoxIoU(), BoxIoU(0.5)]}
        weights = {"class": 1.0, "box": float(box_loss_weight)}
    # (XLA as compile_classifier: the runtime setting, the mirrored-CPU
    # refusal, op determinism; compile_for_task kept XLA on a model compiled
    # with it before determinism was enabled.)
    return compile_with_xla_rules(model, jit_compile, optimizer=optimizer, loss=loss,
                                  metrics=metrics, loss_weights=weights)


def extract_features(model, dataset):
    """Runs the image encoder of `model` once over `(image, target)` batches.

    Args:
        model: a head-swap / localization model, or an `ImageEncoder`.
        dataset: `tf.data.Dataset` of (uint8 images, targets), batched.

    Returns:
        (features float32 (N, D), targets as NumPy arrays, a dict of them for
        dict targets), in the dataset's order.
    """
    encoder = find_image_encoder(model)
    spec = getattr(dataset, "element_spec", None)
    if isinstance(spec, tuple) and len(spec) != 2:
        # It failed with "too many values to unpack (expected 2)".
        raise ValueError(
            f"extract_features takes (images, targets) batches; the dataset yields "
            f"{len(spec)}-tuples (sample weights?). To weight classes in fine_tune pass "
            "class_weight=; to train on a dataset with sample weights, pass "
            "cache_features=False.")
    features, targets = [], []
    for images, target in dataset:
        features.append(np.asarray(encoder.predict_on_batch(images), np.float32))
        targets.append(tf.nest.map_structure(np.asarray, target))
    if not features:
        raise ValueError("the dataset is empty: no features to extract.")
    stacked = tf.nest.map_structure(lambda *t: np.concatenate(t), *targets)
    return np.concatenate(features), stacked


def features_dataset(features, targets, batch_size=32, shuffle=False, seed=0):
    """Cached features and targets as a batched, prefetched `tf.data.Dataset`."""
    ds = tf.data.Dataset.from_tensor_slices((features, targets))
    if shuffle:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _best_weights(has_validation, epochs):
    return keras.callbacks.EarlyStopping(
        monitor="val_loss" if has_validation else "loss", patience=epochs + 1,
        restore_best_weights=True)


def _fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        # Keras' notes on finite, already shuffled tf.data pipelines are expected here.
        warnings.filterwarnings("ignore", message=r".*shuffle=True.*")
        warnings.filterwarnings("ignore", message=r".*ran out of data.*")
        return model.fit(*args, **kwargs)


class _OnWholeModel(keras.callbacks.Callback):
    """A user's callback, run while the head trains on cached features,
    shown the whole model: a `ModelCheckpoint` then saves the image model
    (it saved the head alone, which takes features, not images), and a
    callback that sets `stop_training` (`EarlyStopping`) stops the head's
    training."""

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
              "on_test_batch_begin", "on_test_batch_end", "on_predict_begin",
              "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end")

    def __init__(self, inner, whole):
        super().__init__()
        self.inner, self.whole = inner, whole
        for hook in self._HOOKS:
            setattr(self, hook, self._forward(getattr(inner, hook)))

    def _forward(self, method):
        def call(*args, **kwargs):
            method(*args, **kwargs)
            if getattr(self.whole, "stop_training", False) and self.model is not None:
                self.model.stop_training = True
        return call

    def set_model(self, model):
        super().set_model(model)
        self.whole.stop_training = False
        self.inner.set_model(self.whole)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)


def _history(history):
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def head_learning_rate_for(task):
    """The head phase's default learning rate for `task`: 1e-3 (the classic
    recipe), and 1e-4 for `"localization"`. At 1e-3 the box head's sigmoid
    centre and size saturated within a few epochs (the corners then clipped
    to the image's edges, with no gradient back): on notebook 04's pasted
    emoji, mean IoU 0.377 and 0.226 for head seeds 0 and 1 against 0.443 and
    0.434 at 1e-4 (always the mean training box: 0.276; class accuracy
    0.66-0.70 at both); on a helper's shapes 0.070 against 0.447."""
    return 1e-4 if task == "localization" else 1e-3


def fine_tune(model, train_data, validation_data=None, *, task=None, head_epochs=5,
              fine_tune_epochs=5, head_learning_rate=None, fine_tune_learning_rate=1e-5,
              unfreeze_layers=None, unfreeze_from=None, cache_features=True, batch_size=32,
              seed=0, verbose="auto", callbacks=(), class_weight=None):
    """Trains a head-swap (or localization) model in two phases and keeps both histories.

    1. **Head.** The backbone is frozen; the head trains at `head_learning_rate`.
       With `cache_features=True` the backbone runs once over `train_data` and
       `validation_data` and the `head` layer trains on the stored features: the
       same model, several times faster per epoch (no augmentation then — each
       image is seen with the pixels it had when cached).
    2. **Fine-tuning.** `unfreeze(model, num_layers=unfreeze_layers,
       from_layer=unfreeze_from)` (BatchNorm stays frozen, unless the encoder
       trains a random backbone, `batch_norm="train"`; by default the top
       quarter of the backbone's weighted layers), recompile at
       `fine_tune_learning_rate`, train the full model on images.

    After each phase the weights of its best epoch (lowest validation loss, or
    training loss without validation data) are restored.

    Args:
        model: keras.Model from `build_head_swap_classifier` or `build_localization_model`.
        train_data: `tf.data.Dataset` of (uint8 images, targets), batched.
        validation_data: same, or None.
        task: str or None. See `compile_for_task` (None reads it from the model).
        head_epochs: int >= 0.
        fine_tune_epochs: int >= 0 (0 skips phase 2).
        head_learning_rate: float or None. None: `head_learning_rate_for(task)`,
            1e-3 (the classic recipe), 1e-4 for localization.
        fine_tune_learning_rate: float. 1e-5 in the classic recipe.
        unfreeze_layers: int or None. See `unfreeze(num_layers=...)`.
        unfreeze_from: str or None. See `unfreeze(from_layer=...)`.
        cache_features: bool. Train phase 1 on cached backbone features.
        batch_size: int. Batch size of the cached-feature dataset.
        seed: int. Shuffle seed of the cached-feature dataset.
        verbose: passed to `fit`.
        class_weight: dict class id → weight or None, for both phases (as
            Keras' `fit` takes it: single-output models with class-id or
            one-hot targets; imbalanced data).
        callbacks: extra Keras callbacks for both phases. While the head
            trains on cached features they are shown the whole model (a
            `ModelCheckpoint` saves the image model, not the head alone). The
            same callback objects run in both phases: a `CSVLogger` needs
            `append=True` to keep phase 1's rows, and a `ModelCheckpoint`
            with `save_best_only` keeps the best of both phases.

    Returns:
        dict with `"head"` and `"fine_tune"` (each phase's history, dict of
        lists), `"history"` (both concatenated, for one set of curves),
        `"head_epochs"` (where phase 2 starts in `"history"`), `"unfrozen"`
        (the backbone layers trained in phase 2) and `"seconds"`
        (`features`, `head`, `fine_tune`).

    Example:
        >>> model = mmtl_tf.models.build_head_swap_classifier(
        ...     "efficientnet_lite0", num_classes=9, input_shape=(96, 96, 3))  # doctest: +SKIP
        >>> result = mmtl_tf.models.fine_tune(model, train, val, head_epochs=5,
        ...                                   fine_tune_epochs=3)  # doctest: +SKIP

    References:
        Keras guide "Transfer learning & fine-tuning" (freeze, train the head,
        unfreeze, recompile with a low learning rate); source document, section 4.2.1.
    """
    raise_collected_problems()  # no training on data with bad items left out
    task = task or task_of(model)
    if head_learning_rate is None:
        head_learning_rate = head_learning_rate_for(task)
    for label, value in (("head_epochs", head_epochs), ("fine_tune_epochs", fine_tune_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be an int >= 0, got {value!r}.")
    if not model.trainable:  # it trained nothing, with Keras' warning alone
        raise ValueError(f"{model.name!r} has trainable=False, so nothing would train; set "
                         "model.trainable = True (fine_tune freezes the backbone itself).")
    if head_epochs and cache_features and "head" not in [layer.name for layer in model.layers]:
        # It was Keras' "No such layer: head", after the features were computed.
        raise ValueError(
            f"fine_tune(cache_features=True) trains the model's 'head' layer on the "
            f"backbone's cached features; {model.name!r} has no layer named 'head'. Build "
            "the model with build_head_swap_classifier or build_localization_model, or "
            "pass cache_features=False.")
    if fine_tune_epochs:
        check_unfreeze(model, unfreeze_layers, unfreeze_from)
    seconds = {"features": 0.0, "head": 0.0, "fine_tune": 0.0}
    has_val = validation_data is not None
    head_history, fine_history, unfrozen = {}, {}, []
    freeze(model)
    if head_epochs:
        if cache_features:
            start = time.perf_counter()
            train_x, train_y = extract_features(model, train_data)
            val = None
            if has_val:
                val = features_dataset(*extract_features(model, validation_data),
                                       batch_size=batch_size)
            seconds["features"] = time.perf_counter() - start
            trainee = model.get_layer("head")
            fit_train = features_dataset(train_x, train_y, batch_size, shuffle=True, seed=seed)
        else:
            trainee, fit_train, val = model, train_data, validation_data
        compile_for_task(trainee, task, head_learning_rate)
        start = time.perf_counter()
        shown = [_OnWholeModel(c, model) for c in callbacks] if trainee is not model \
            else list(callbacks)
        history = _fit(trainee, fit_train, validation_data=val, epochs=head_epochs, verbose=verbose,
                       callbacks=[*shown, _best_weights(has_val, head_epochs)],
                       class_weight=class_weight)
        seconds["head"] = time.perf_counter() - start
        head_history = _history(history)
    if fine_tune_epochs:
        unfrozen = unfreeze(model, num_layers=unfreeze_layers, from_layer=unfreeze_from) \
            if (unfreeze_layers is not None or unfreeze_from is not None) else \
            _unfreeze_default(model)
        compile_for_task(model, task, fine_tune_learning_rate)
        start = time.perf_counter()
        history = _fit(model, train_data, validation_data=validation_data, epochs=fine_tune_epochs,
                       verbose=verbose, class_weight=class_weight,
                       callbacks=[*callbacks, _best_weights(has_val, fine_tune_epochs)])
        seconds["fine_tune"] = time.perf_counter() - start
        fine_history = _history(history)
    else:
        compile_for_task(model, task, head_learning_rate)
    keys = list(dict.fromkeys([*head_history, *fine_history]))
    merged = {k: head_history.get(k, [float("nan")] * head_epochs) + fine_history.get(
        k, [float("nan")] * fine_tune_epochs) for k in keys}
    return {"head": head_history, "fine_tune": fine_history, "history": merged,
            "head_epochs": head_epochs if head_history else 0, "unfrozen": unfrozen,
            "seconds": seconds}


def check_unfreeze(model, unfreeze_layers=None, unfreeze_from=None):
    """A `ValueError` naming `unfreeze_layers` / `unfreeze_from` when the
    model's backbone has no such layers (checked before the head phase: a bad
    value failed after the features were computed and the head trained).
    Leaves the backbone frozen."""
    if unfreeze_layers is None and unfreeze_from is None:
        return
    try:
        unfreeze(model, num_layers=unfreeze_layers, from_layer=unfreeze_from)
    except ValueError as e:
        raise ValueError(str(e).replace("num_layers", "unfreeze_layers").replace(
            "from_layer", "unfreeze_from")) from None
    finally:
        try:
            freeze(model)
        except ValueError:
            pass  # no backbone: said by unfreeze's error


def _unfreeze_default(model):
    """The top quarter of the backbone's weighted layers (see `unfreeze`)."""
    backbone = find_image_encoder(model).backbone
    weighted = [layer for layer in backbone.layers if layer.weights]
    return unfreeze(model, num_layers=max(1, len(weighted) // 4))
