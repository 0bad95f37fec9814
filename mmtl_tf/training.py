"""Compile/fit recipes, callbacks and run-folder files shared by every task."""

import contextlib
import json
import os
import re
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from mmtl_tf import runtime
from mmtl_tf.errors import DataError, check_count, raise_collected_problems
from mmtl_tf.files import _listed, atomic_file, atomic_json, foreign_entries
from mmtl_tf.losses.classifier_losses import ClassIdCrossentropy, MultiHotCrossentropy


def atomic_write_json(obj, path):
    """Writes JSON to `path` through a temporary file and a rename."""
    atomic_json(obj, path, indent=2, ensure_ascii=False, default=_to_builtin)


def _to_builtin(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file in the same folder + rename.

    A compiled model whose optimizer never ran (e.g. a head-swap model whose
    head trained on cached features through another model) gets its optimizer
    built first: otherwise `keras.saving.load_model` builds it on loading and
    warns "Skipping variable loading for optimizer" for the missing slots.

    The path must end in `.keras` (a `ValueError` otherwise): an `.h5` or
    extension-less path got a `.keras` archive under that name, which
    loading then failed on ("file signature not found").
    """
    if not os.fspath(path).endswith(".keras"):
        raise ValueError(f"{os.fspath(path)}: save_model_atomic writes the .keras format; "
                         "give a path ending in .keras (for weights alone use "
                         "model.save_weights(... .weights.h5)).")
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built and model.built:
        strategy = getattr(model, "distribute_strategy", None)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            optimizer.build(model.trainable_variables)
    atomic_file(path, model.save, suffix=".keras")


BEST_STATE_FILE = "best.keras.json"


def _has_training_values(logs):
    """Whether epoch logs (or a history) hold a training value, not only
    `val_` ones: without, no training step ran (data that yielded no batch)."""
    return any(not key.startswith("val_") for key in logs)


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` after each epoch that improves `monitor`.

    Unlike `keras.callbacks.ModelCheckpoint`, the file is written to a temporary
    name and renamed, so an interrupted save never leaves a corrupt checkpoint
    in place of the last good one.

    With `state_path`, the best value and epoch so far and the logs of every
    epoch are kept there too (JSON, written atomically after each epoch), and
    with `resume` they are read back when training starts: a fit resumed by
    `keras.callbacks.BackupAndRestore` then saves only epochs better than the
    best of the interrupted fit (before, the first resumed epoch always
    replaced `path`, even a better model), and `earlier_logs` holds the logs
    of the epochs the interrupted fit finished before the one resumed.

    Args:
        path: str. A `.keras` file.
        monitor: str. Logged quantity to watch.
        mode: str. `"min"` or `"max"`.
        save_best_only: bool.
        state_path: str or None. A `.json` file for the state above.
        resume: bool. Whether to read `state_path` when training starts.
    """

    def __init__(self, path, monitor="val_loss", mode="min", save_best_only=True,
                 state_path=None, resume=False):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not allowed; use 'min' or 'max'.")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.save_best_only = save_best_only
        self.state_path, self.resume = state_path, resume
        self.best = None
        self.best_epoch = None
        self.earlier_logs = {}
        self._logs = None
        self._missing_said = False

    def on_train_begin(self, logs=None):
        self._logs = None
        self._missing_said = False
        if not (self.resume and self.state_path and os.path.isfile(self.state_path)):
            return
        try:
            state = read_json(self.state_path)
        except (OSError, ValueError) as e:
            warnings.warn(f"{self.state_path}: not read ({e}); the resumed fit may replace "
                          f"{self.path} with a model worse than the interrupted fit's best.",
                          RuntimeWarning)
            return
        if isinstance(state, dict) and state.get("monitor") == self.monitor and \
                state.get("mode") == self.mode:
            self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
            self.earlier_logs = state.get("logs") or {}

    def on_epoch_begin(self, epoch, logs=None):
        if self._logs is None:  # the first epoch of this fit: `epoch` were done before
            self.earlier_logs = {k: list(v)[:epoch] for k, v in self.earlier_logs.items()}
            self._logs = {k: list(v) for k, v in self.earlier_logs.items()}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _has_training_values(logs):
            # No training step ran (data that yielded no batch): the model is
            # untrained, and must not replace a checkpoint (fit raises then).
            return
        value = logs.get(self.monitor)
        if value is None and not self._missing_said:
            self._missing_said = True
            warnings.warn(f"{self.path}: not written: the checkpoint monitor {self.monitor!r} "
                          f"is not among the logged values ({', '.join(sorted(logs))}); "
                          "pass one of them as checkpoint_monitor (a validation value needs "
                          "validation data that yields a batch).", RuntimeWarning)
        better = value is not None and (
            self.best is None or (value < self.best if self.mode == "min" else value > self.best))
        if better:
            self.best, self.best_epoch = float(value), epoch
        if better or not self.save_best_only:
            save_model_atomic(self.model, self.path)
        if self.state_path:
            if self._logs is None:
                self._logs = {}
            # One entry per epoch in every key (None where an epoch did not
            # log it, e.g. validation data that yielded no batch that epoch):
            # lists of unequal length put later values on the wrong epochs.
            done = max((len(values) for values in self._logs.values()), default=0)
            for key in dict.fromkeys([*self._logs, *logs]):
                values = self._logs.setdefault(key, [None] * done)
                values.append(float(logs[key]) if key in logs else None)
            atomic_write_json({"monitor": self.monitor, "mode": self.mode, "best": self.best,
                               "best_epoch": self.best_epoch, "logs": self._logs},
                              self.state_path)


def _single_output_width(model):
    """(the model's outputs, the last dimension of its only output, or None
    when it has several, none yet (a subclassed model not built) or an
    unknown width)."""
    try:
        outputs = list(model.outputs or ())
    except (AttributeError, ValueError):  # a subclassed model not built yet
        outputs = []
    width = outputs[0].shape[-1] if len(outputs) == 1 and outputs[0].shape else None
    return outputs, width


def compile_classifier(model, num_classes, learning_rate=1e-3, optimizer="adam",
                       jit_compile=None, metrics=("accuracy",)):
    """Compiles a classifier whose output is probabilities.

    Binary cross-entropy for one sigmoid output (labels 0/1), sparse
    categorical cross-entropy otherwise (labels are int class ids of shape
    (N,) or (N, 1)); other labels, such as one-hot vectors, raise a
    `ValueError` naming the expected format when training or evaluation
    starts (`mmtl_tf.losses.ClassIdCrossentropy` and `MultiHotCrossentropy`:
    Keras' losses plus a static shape check). XLA follows
    `mmtl_tf.runtime` unless `jit_compile` is given; if Keras had to turn XLA
    off (a layer without XLA support), a `RuntimeWarning` says so.

    `metrics` is a list of Keras metric names and `keras.metrics.Metric`
    objects (a single one may be passed alone; None or () for none), all
    compiled: `"accuracy"` (or `"acc"`) becomes binary accuracy for one output
    and sparse categorical accuracy otherwise, logged as `accuracy`; other
    names are looked up with `keras.metrics.get`. A `ValueError` names a
    metric that cannot be used: an unknown name, or a Keras metric that does
    not fit the labels (for `num_classes` > 1 the labels are int class ids,
    so e.g. `"auc"`, `"precision"` or `"categorical_accuracy"`, which compare
    labels and probabilities column by column, are refused; use
    `"sparse_top_k_categorical_accuracy"` or a metric of your own that takes
    int ids; for one output, the categorical and sparse ones are refused).
    """
    num_classes = check_count("num_classes", num_classes)
    outputs, width = _single_output_width(model)
    if width is not None and width != num_classes:
        raise ValueError(f"num_classes={num_classes} but {model.name} has {width} outputs "
                         f"(shape {tuple(outputs[0].shape)}); pass num_classes={width} or "
                         "build the model for the intended classes.")
    metric_objs = classifier_metrics(metrics, num_classes)
    loss = MultiHotCrossentropy() if num_classes == 1 else ClassIdCrossentropy()
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get({"class_name": optimizer,
                                          "config": {"learning_rate": learning_rate}})
    return compile_with_xla_rules(model, jit_compile, optimizer=optimizer, loss=loss,
                                  metrics=metric_objs)


def compile_with_xla_rules(model, jit_compile=None, **compile_args):
    """`model.compile(**compile_args)` with mmtl_tf's XLA rules, shared by
    `compile_classifier` and `compile_for_task`: `jit_compile=None` follows
    `mmtl_tf.runtime`; `True` is refused inside a strategy mirrored over
    several CPU devices, as `runtime.get_jit_compile()` refuses it (given
    explicitly it failed only at `fit`); under op determinism a model
    compiled with XLA before is compiled without it; and a `RuntimeWarning`
    says when Keras turned XLA off, and why."""
    if jit_compile is None:
        jit_compile = runtime.get_jit_compile()
    elif jit_compile is True:
        runtime._check_xla_strategy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(jit_compile=jit_compile, **compile_args)
    why = "; ".join(str(w.message) for w in caught)
    if jit_compile and model.jit_compile and runtime.is_deterministic():
        # Keras compiles no model with XLA under op determinism, but keeps
        # jit_compile=True on a model compiled with it before (the value
        # does not change, so its check does not run): turn it off here.
        model.jit_compile = False
        why = (f"op determinism is on ({model.name} was compiled with jit_compile=True "
               "before), and Keras compiles no model with XLA then")
    if jit_compile and not model.jit_compile:
        warnings.warn(f"{model.name}: Keras turned jit_compile off ({why}).", RuntimeWarning)
    return model


# Keras metrics that compare labels and outputs column by column (or take
# one-hot labels): wrong with the int class ids of a softmax classifier.
def _dense_label_metrics():
    m = keras.metrics
    return (m.AUC, m.Precision, m.Recall, m.PrecisionAtRecall, m.RecallAtPrecision,
            m.SensitivityAtSpecificity, m.SpecificityAtSensitivity, m.TruePositives,
            m.TrueNegatives, m.FalsePositives, m.FalseNegatives, m.BinaryAccuracy,
            m.CategoricalAccuracy, m.TopKCategoricalAccuracy, m.BinaryCrossentropy,
            m.CategoricalCrossentropy, m.F1Score, m.FBetaScore, m.BinaryIoU, m.OneHotIoU,
            m.OneHotMeanIoU)


# Keras metrics that need several probability columns (argmax / top-k over the
# classes, or int class ids): wrong with one sigmoid output.
def _multi_column_metrics():
    m = keras.metrics
    return (m.SparseCategoricalAccuracy, m.SparseTopKCategoricalAccuracy,
            m.SparseCategoricalCrossentropy, m.CategoricalAccuracy,
            m.TopKCategoricalAccuracy, m.CategoricalCrossentropy)


def classifier_metrics(metrics, num_classes):
    """The metric objects `compile_classifier` compiles for `metrics` (see
    there), or a `ValueError` naming one that cannot be used."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, keras.metrics.Metric)):
        metrics = [metrics]
    try:
        metrics = list(metrics)
    except TypeError:
        raise ValueError(f"metrics={metrics!r} is not allowed; pass a list of metric names "
                         "and keras.metrics.Metric objects.") from None
    objs = []
    for metric in metrics:
        if isinstance(metric, str) and metric in ("accuracy", "acc"):
            objs.append(keras.metrics.BinaryAccuracy(name="accuracy") if num_classes == 1
                        else keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
            continue
        if isinstance(metric, str):
            try:
                obj = keras.metrics.get(metric)
            except ValueError:
                raise ValueError(f"metrics: {metric!r} is not a Keras metric name; use "
                                 "'accuracy', a name keras.metrics.get knows (e.g. 'auc') or "
                                 "a keras.metrics.Metric object.") from None
            if not isinstance(obj, keras.metrics.Metric):  # a bare function
                obj = keras.metrics.MeanMetricWrapper(obj, name=metric)
            elif obj.name != metric:
                # Logged under the name given, as Keras' compile does: the
                # second "auc" of a process was "auc_1", and a checkpoint
                # monitoring "val_auc" saved nothing.
                obj = type(obj).from_config({**obj.get_config(), "name": metric})
        elif isinstance(metric, keras.metrics.Metric):
            obj = metric
        else:
            raise ValueError(f"metrics: {metric!r} ({type(metric).__name__}) is not allowed; "
                             "use a metric name or a keras.metrics.Metric object.")
        if num_classes > 1 and isinstance(obj, _dense_label_metrics()):
            raise ValueError(
                f"metrics: {metric!r} cannot be used with num_classes={num_classes}: the labels "
                "are int class ids and it compares labels and probabilities column by column; "
                "use 'accuracy', 'sparse_top_k_categorical_accuracy' or a metric that takes "
                "int class ids.")
        if num_classes == 1 and isinstance(obj, _multi_column_metrics()):
            raise ValueError(
                f"metrics: {metric!r} cannot be used with num_classes=1 (one sigmoid output, "
                "labels 0/1): it needs one probability column per class; use 'accuracy', "
                "'auc', 'precision', 'recall' or another binary metric.")
        objs.append(obj)
    return objs


def history_to_dict(history):
    """`History.history` as plain floats (JSON-able)."""
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def plot_curves(history, path, title=None):
    """Saves loss and metric curves (train and validation) as a PNG.

    One panel per quantity; a quantity with only validation values gets
    only that curve, and an empty history an empty panel that says so.
    `history` is a dict of lists (what `fit` returns) or a Keras `History`."""
    import matplotlib

    if isinstance(history, keras.callbacks.History):
        history = history_to_dict(history)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(k[len("val_"):] if k.startswith("val_") else k
                               for k in history))
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.4),
                             squeeze=False)
    if not names:
        axes[0][0].text(0.5, 0.5, "no epochs recorded", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, name in zip(axes[0], names):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if history.get(key):
                values = [np.nan if v is None else v for v in history[key]]  # see _joined_logs
                ax.plot(np.arange(1, len(values) + 1), values, marker="o",
                        label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_file(path, lambda tmp: fig.savefig(tmp, dpi=90), suffix=".png")
    finally:
        plt.close(fig)


def fit(model, train_ds, val_ds=None, epochs=1, run_dir=None, verbose="auto",
        callbacks=(), backup=True, checkpoint_monitor="val_loss", checkpoint_mode="auto"):
    """`model.fit` with the callbacks every mmtl_tf run uses.

    With a `run_dir`: the best model by `checkpoint_monitor` is written
    atomically to `run_dir/best.keras` (`checkpoint_mode="auto"`, the
    default: the highest value for a monitor that grows as the model
    improves, by the direction Keras gives its metric or else by its name,
    accuracy, AUC, precision, recall, IoU, F1, mAP, ..., and the lowest for
    any other; a resumed fit keeps the interrupted one's mode), and with
    `backup` a `BackupAndRestore`
    folder lets an interrupted run resume where it stopped when `fit` is
    called again with the same `run_dir`; `run_dir/best.keras.json` keeps
    the best value so far and each epoch's logs, so the resumed fit replaces
    best.keras only with a better model and returns the history of every
    epoch, those of the interrupted fit included. The history is returned as
    a dict of lists (also what `history.json` holds). The CLI's tasks pass
    `backup=False`: they train in a staging folder that an interruption
    removes (see `mmtl_tf.tasks.common.staged_run`), so a backup there could
    never be used.

    Returns:
        (history dict, seconds spent in `fit`).

    Raises:
        DataError: the training data yields no batch (e.g. fewer examples
            than one batch with `drop_remainder=True`): Keras would only warn
            and return a history without training values; or validation data
            known to yield none (its cardinality is 0).
        ValueError: `checkpoint_mode` other than "auto" / "min" / "max"; with a
            `run_dir`, a `backup/` folder there holding files of your own
            (Keras deletes the folder), or a resume whose monitor or mode
            differs from the interrupted fit's (see `tests/test_training_resume.py`).
            Or a classifier compiled by `compile_classifier` with fewer
            outputs than the classes of `train_ds.class_names` (see
            `check_outputs_fit_classes`), e.g. the default `num_classes=1`
            of the model builders on the 9 classes of the bundled data; or a
            `train_ds.text_vectorizer` (`make_image_text_dataset`'s) with
            more tokens than the model's `Embedding` takes.
    """
    raise_collected_problems()  # no training on data with bad items left out
    given_mode = checkpoint_mode
    checkpoint_mode = _check_checkpoint_mode(checkpoint_monitor, checkpoint_mode,
                                             warn=bool(run_dir), model=model)
    if isinstance(train_ds, tf.data.Dataset) and int(train_ds.cardinality()) == 0:
        raise DataError(_NO_BATCH)
    check_outputs_fit_classes(model, getattr(train_ds, "class_names", None))
    vectorizer = getattr(train_ds, "text_vectorizer", None)
    if vectorizer is not None:
        # A larger vocabulary failed deep in the Embedding's gather ("indices[0,4]
        # = 12 is not in [0, 10)"); on a GPU such a gather returns zeros.
        from mmtl_tf.export import check_vocabulary_fits

        check_vocabulary_fits(model, vectorizer)
    if isinstance(val_ds, tf.data.Dataset) and int(val_ds.cardinality()) == 0:
        raise DataError(_NO_VALIDATION_BATCH)
    cbs = list(callbacks)
    if run_dir:
        monitor = checkpoint_monitor if val_ds is not None else checkpoint_monitor.replace("val_", "")
        backup_dir = os.path.join(run_dir, "backup")
        state_path = os.path.join(run_dir, BEST_STATE_FILE)
        _check_backup_folder(backup_dir)
        resume = backup and os.path.isdir(backup_dir)
        if resume:
            state = _read_state(state_path)
            if given_mode == "auto":
                # "auto" resumes as the interrupted fit kept its best (a fit
                # started with the earlier default, "min", keeps it).
                resumed = _resumed_mode(state, monitor) or checkpoint_mode
                if resumed != checkpoint_mode:
                    warnings.warn(
                        f"{backup_dir}: the interrupted fit kept its best by the "
                        f"{'lowest' if resumed == 'min' else 'highest'} {monitor} "
                        f"(checkpoint_mode={resumed!r}, the default then); this resumed fit "
                        f"does the same. To keep the {'highest' if resumed == 'min' else 'lowest'}"
                        f", remove that folder and train afresh.", RuntimeWarning)
                checkpoint_mode = resumed
            _check_resumed_monitor(state, backup_dir, monitor, checkpoint_mode)
        elif not backup and os.path.isdir(backup_dir):
            # An interrupted fit's backup, which a later fit with backup=True
            # resumed (its epochs, its history) in place of this run's.
            import shutil

            shutil.rmtree(backup_dir)
            warnings.warn(f"{backup_dir}: removed the backup of an earlier, interrupted fit "
                          "(backup=False trains afresh; a later fit would have resumed it).",
                          RuntimeWarning)
        os.makedirs(run_dir, exist_ok=True)
        checkpoint = AtomicModelCheckpoint(
            os.path.join(run_dir, "best.keras"), monitor=monitor, mode=checkpoint_mode,
            state_path=state_path if backup else None, resume=resume)
        cbs.append(checkpoint)
        if backup:
            cbs.append(keras.callbacks.BackupAndRestore(backup_dir))
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Keras' notes on a finite tf.data pipeline ("shuffle=True ... ignored",
        # "input ran out of data") are expected here: our datasets are shuffled
        # and finite by design.
        warnings.filterwarnings("ignore", message=r".*shuffle=True.*")
        warnings.filterwarnings("ignore", message=r".*ran out of data.*")
        try:
            history = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                                callbacks=cbs, verbose=verbose)
        except BaseException:
            # A step whose first trace failed (labels of the wrong shape, say)
            # is kept by Keras and fails the next fit even with the right data
            # ("Creating variables on a non-first call ..."): built anew then.
            model.train_function = model.test_function = None
            raise
        finally:
            # BackupAndRestore sets the epoch a resumed fit starts at on the
            # model, and Keras keeps it: every later fit of this model
            # started there (one with epochs at or below it trained nothing).
            resumed_at = getattr(model, "_initial_epoch", None)
            if resumed_at is not None:
                model._initial_epoch = None
    seconds = time.perf_counter() - start
    history = history_to_dict(history)
    earlier = checkpoint.earlier_logs if run_dir else {}
    if earlier and resumed_at is not None:
        # The epochs the backup kept (with no epoch left to run the
        # checkpoint never trimmed them: an epoch the backup lost came back).
        earlier = {key: values[:resumed_at] for key, values in earlier.items()}
    if earlier:  # resumed: the interrupted fit's epochs first
        history = _joined_logs(earlier, history)
    if not _has_training_values(history):
        # Keras only warns when the training data runs out before the first step.
        raise DataError(_NO_BATCH)
    return history, seconds


def check_outputs_fit_classes(model, class_names):
    """Raises a `ValueError` when a classifier compiled by `compile_classifier`
    cannot take the labels of a dataset whose labels index `class_names`
    (the `class_names` attribute of mmtl_tf's datasets).

    Keras itself trains such a model without an error: one sigmoid output on
    class ids 0..8 gives a meaningless binary cross-entropy, and a softmax
    over fewer outputs than classes gets ids it has no output for. A model
    with more outputs than the data's classes is accepted (its other classes
    are not in this data). Models compiled with other losses, and data without
    `class_names`, are not checked.
    """
    if not class_names or len(class_names) < 2:
        return
    loss = getattr(model, "loss", None)
    if not isinstance(loss, (ClassIdCrossentropy, MultiHotCrossentropy)):
        return
    _, width = _single_output_width(model)
    if width is None:
        return
    width, count = int(width), len(class_names)
    if isinstance(loss, MultiHotCrossentropy):
        wrong = width == 1 and count > 2
    else:
        wrong = width < count
    if wrong:
        kind = "one sigmoid output" if width == 1 else f"{width} outputs"
        raise ValueError(
            f"{model.name} has {kind}, but the training data has {count} classes "
            f"({_listed([str(c) for c in class_names])}): build the model with "
            f"num_classes={count} (len(dataset.class_names)) and compile it with the same.")


_NO_VALIDATION_BATCH = (
    "the validation data yields no batch (fewer examples than one batch where the last "
    "partial batch is dropped, or none), so no validation value would be logged and no "
    "best model kept; add examples, lower the batch size or pass val_ds=None.")

# What keras.callbacks.BackupAndRestore writes into its folder (and deletes
# with the folder when training ends).
_BACKUP_FILES = ("latest.weights.h5", "training_metadata.json", "latest.weights.h5.bkp",
                 "training_metadata.json.bkp")


# Logged values that grow as the model gets better (a checkpoint on them
# with mode "min" kept the worst epoch), by Keras' names among others:
# io_u / mean_io_u (IoU), r2_score, cosine_similarity, pearson_correlation,
# concordance_correlation, sensitivity/specificity_at_....
_HIGHER_IS_BETTER = re.compile(
    r"acc|auc|precision|recall|sensitivity|specificity|iou|io_u|f1|fbeta|r2|"
    r"cosine_similarity|pearson|concordance|(^|_)map($|_|@)", re.IGNORECASE)


def _metric_direction(model, name):
    """"up" or "down" as Keras' metric object named `name` of `model` says
    (`_direction`, which Keras' own "auto" reads), else None: a metric of
    your own with its direction set, or one the pattern does not know."""
    found = []

    def visit(metrics):
        for metric in metrics or ():
            inner = getattr(metric, "metrics", None)
            if isinstance(inner, (list, tuple)) and metric is not model:
                visit(inner)
            if getattr(metric, "name", None) == name:
                found.append(getattr(metric, "_direction", None))

    try:
        visit(getattr(model, "metrics", ()))
        compiled = getattr(model, "_compile_metrics", None)
        visit(keras.tree.flatten(getattr(compiled, "_user_metrics", None) or []))
    except Exception:  # (a model that cannot list its metrics: the pattern decides)
        return None
    return next((d for d in found if d in ("up", "down")), None)


def _read_state(state_path):
    """The interrupted fit's state file (`BEST_STATE_FILE`) as a dict, or None
    when it cannot be read or is not one (the checkpoint warns about that)."""
    try:
        state = read_json(state_path)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _resumed_mode(state, monitor):
    """The mode the interrupted fit kept its best by (its `_read_state`), when
    it kept it by `monitor`; else None."""
    if state is not None and state.get("monitor") == monitor and \
            state.get("mode") in ("min", "max"):
        return state["mode"]
    return None


def _check_checkpoint_mode(monitor, mode, warn=True, model=None):
    """The mode, "min" or "max", that `checkpoint_mode` `mode` means for
    `monitor`: "auto" is "max" for a monitor that grows as the model
    improves (the direction of `model`'s metric of that name, where Keras
    gives one, else the name: accuracy, AUC, IoU, ...; `_HIGHER_IS_BETTER`)
    and "min" for any other (a loss, an error). A `ValueError` names any
    other `mode` (the checkpoint's message named its own `mode`, and without
    a run_dir nothing was checked). With `warn`, a `RuntimeWarning` for "min"
    given with such a growing monitor (it kept the worst epoch; "min" was
    the default then) and for "max" given with a loss."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"checkpoint_mode={mode!r} is not allowed; use 'auto' (the default: "
                         "'max' for accuracy, AUC, ..., else 'min'), 'min' (a loss) or 'max'.")
    name = str(monitor).removeprefix("val_")
    direction = None if "loss" in name or model is None else _metric_direction(model, name)
    grows = direction == "up" if direction else (
        "loss" not in name and bool(_HIGHER_IS_BETTER.search(name)))
    if mode == "auto":
        return "max" if grows else "min"
    if warn and mode == "min" and grows:
        warnings.warn(f"checkpoint_monitor={monitor!r} with checkpoint_mode='min' keeps the "
                      f"epoch with the lowest {name}; pass checkpoint_mode='max' (or 'auto').",
                      RuntimeWarning)
    if warn and mode == "max" and "loss" in name:
        warnings.warn(f"checkpoint_monitor={monitor!r} with checkpoint_mode='max' keeps the "
                      f"epoch with the highest {name}; pass checkpoint_mode='min' (or 'auto').",
                      RuntimeWarning)
    return mode


def _check_backup_folder(backup_dir):
    """A `ValueError` when `backup_dir` holds files BackupAndRestore does not
    write: it deletes the folder, with them, when training ends."""
    if not os.path.isdir(backup_dir):
        return
    mine = foreign_entries(backup_dir, _BACKUP_FILES)
    if mine:
        raise ValueError(f"{backup_dir}: holds {_listed(mine)}, which fit's backup does not "
                         "write; the folder is deleted when training ends: move them out.")


def _check_resumed_monitor(state, backup_dir, monitor, mode):
    """A `ValueError` when the interrupted fit being resumed kept its best by
    another monitor or mode (`state`: its `_read_state`): its best could not
    be compared (best.keras was replaced by a worse model) and its epochs'
    logs were dropped."""
    if state is None:
        return  # the checkpoint warns that it could not read it
    before = (state.get("monitor"), state.get("mode"))
    if before != (monitor, mode):
        raise ValueError(
            f"{backup_dir}: the interrupted fit being resumed kept its best by "
            f"{before[0]!r} ({before[1]}), this one by {monitor!r} ({mode}) (checkpoint_monitor, "
            "checkpoint_mode, and val_ds: without validation data val_ is dropped); resume "
            "it as it was started, or remove that folder to train afresh.")


def _joined_logs(earlier, later):
    """The logs of an interrupted fit's epochs followed by the resumed fit's,
    key by key; a key that only one of them logged is None for the other's
    epochs (the resumed epochs were dropped when the keys differed)."""
    before = max((len(values) for values in earlier.values()), default=0)
    after = max((len(values) for values in later.values()), default=0)

    def padded(values, length):
        values = list(values or [])
        return values + [None] * (length - len(values))

    return {key: padded(earlier.get(key), before) + padded(later.get(key), after)
            for key in dict.fromkeys([*earlier, *later])}


_NO_BATCH = ("the training data yielded no batch, so nothing was trained (fewer examples "
             "than one batch where the last partial batch is dropped, or every example "
             "skipped as bad); add examples or lower the batch size.")


def majority_class_accuracy(train_labels, test_labels):
    """Accuracy of always predicting the most frequent training label."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    majority = values[np.argmax(counts)]
    return float(np.mean(np.asarray(test_labels) == majority))
