"""`mmtl_tf.training.fit` with a run folder: resuming, the backup folder,
the checkpoint, and the files it writes (a helper's findings, 2026-11-29)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf import training


class _StopAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt when epoch `at` begins (a Ctrl-C)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("simulated Ctrl-C")


def _data(n=32):
    x = np.random.default_rng(0).random((n, 4)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, (x.sum(1) > 2).astype("int32"))).batch(16)


def _model(metrics=("accuracy",)):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    return training.compile_classifier(m, 2, jit_compile=False, metrics=metrics)


def _interrupted(run, epochs=6, at=3, **kwargs):
    with pytest.raises(KeyboardInterrupt):
        training.fit(_model(), _data(), _data(), epochs=epochs, run_dir=run,
                     callbacks=[_StopAt(at)], verbose=0, **kwargs)
    assert os.path.isdir(os.path.join(run, "backup"))


def test_resuming_with_no_epoch_left_returns_the_interrupted_fits_history(tmp_path):
    # With epochs at or below those done it raised "the training data yielded
    # no batch" and the backup was gone.
    for epochs in (3, 2):
        run = str(tmp_path / f"run{epochs}")
        _interrupted(run)
        history, _ = training.fit(_model(), _data(), _data(), epochs=epochs, run_dir=run,
                                  verbose=0)
        assert {k: len(v) for k, v in history.items()} == {k: 3 for k in history}
        assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_a_resumed_model_starts_its_next_fit_at_epoch_0(tmp_path):
    # Keras kept the resumed start epoch on the model: a later fit of it with
    # epochs=3 trained nothing ("no batch"), a longer one skipped epochs.
    run = str(tmp_path / "run")
    _interrupted(run)
    model = _model()
    training.fit(model, _data(), _data(), epochs=5, run_dir=run, verbose=0)
    history, _ = training.fit(model, _data(), _data(), epochs=3, verbose=0)
    assert len(history["loss"]) == 3


def test_files_of_your_own_in_the_backup_folder_are_not_deleted(tmp_path):
    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    (run / "backup" / "my_notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"backup: holds my_notes.txt, which fit's backup "
                                         r"does not write; .* move them out"):
        training.fit(_model(), _data(), _data(), epochs=1, run_dir=str(run), verbose=0)
    assert (run / "backup" / "my_notes.txt").read_text() == "mine"


def test_training_data_without_a_batch_leaves_best_keras_as_it_was(tmp_path):
    run = str(tmp_path / "run")
    training.fit(_model(), _data(), _data(), epochs=2, run_dir=run, verbose=0, backup=False)
    before = open(os.path.join(run, "best.keras"), "rb").read()
    empty = _data().unbatch().filter(lambda x, y: tf.reduce_all(x > 2)).batch(16)
    with pytest.raises(mmtl_tf.DataError, match="yielded no batch"):
        training.fit(_model(), empty, _data(), epochs=1, run_dir=run, verbose=0,
                     backup=False)
    assert open(os.path.join(run, "best.keras"), "rb").read() == before


def test_validation_data_without_a_batch_is_an_error_or_warned_about(tmp_path):
    # fit succeeded, wrote no best.keras and said nothing.
    run = str(tmp_path / "run")
    x = np.zeros((32, 4), "float32")
    none = tf.data.Dataset.from_tensor_slices((x, np.zeros(32, "int32"))).batch(
        64, drop_remainder=True)
    with pytest.raises(mmtl_tf.DataError, match="the validation data yields no batch"):
        training.fit(_model(), _data(), none, epochs=1, run_dir=run, verbose=0)
    assert not os.path.exists(run)
    unknown = _data().unbatch().filter(lambda x, y: tf.reduce_all(x > 2)).batch(16)
    with pytest.warns(RuntimeWarning, match=r"best.keras: not written: the checkpoint monitor "
                                            r"'val_loss' is not among the logged values "
                                            r"\(accuracy, loss\)"):
        training.fit(_model(), _data(), unknown, epochs=2, run_dir=run, verbose=0)
    with pytest.warns(RuntimeWarning, match="monitor 'val_acc' is not among"):
        training.fit(_model(), _data(), _data(), epochs=1, run_dir=run, verbose=0,
                     checkpoint_monitor="val_acc")


def test_metric_names_are_the_names_given_whatever_was_compiled_before(tmp_path):
    # The second "auc" of a process was logged as "auc_1": a checkpoint on
    # "val_auc" kept nothing.
    for i in range(2):
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        training.compile_classifier(m, 1, jit_compile=False, metrics=["auc", "precision"])
        history, _ = training.fit(m, _data(), _data(), epochs=1, verbose=0,
                                  run_dir=str(tmp_path / f"r{i}"), checkpoint_monitor="val_auc",
                                  checkpoint_mode="max")
        assert {"auc", "precision", "val_auc"} <= set(history)
        assert os.path.isfile(tmp_path / f"r{i}" / "best.keras")


def test_resuming_with_another_monitor_is_refused_and_other_logs_are_joined(tmp_path):
    # best.keras was replaced without comparing with the interrupted fit's
    # best, and its epochs were dropped from the history.
    run = str(tmp_path / "run")
    _interrupted(run)
    for kwargs, words in (({"checkpoint_monitor": "val_accuracy", "checkpoint_mode": "max"},
                           r"kept its best by 'val_loss' \(min\), this one by 'val_accuracy' "
                           r"\(max\)"),
                          ({"val_ds": None}, r"this one by 'loss' \(min\)")):
        val = kwargs.pop("val_ds", _data())
        with pytest.raises(ValueError, match=words):
            training.fit(_model(), _data(), val, epochs=6, run_dir=run, verbose=0, **kwargs)
    assert os.path.isdir(os.path.join(run, "backup"))  # still there to resume
    # Other metrics: every epoch kept; a key the interrupted fit did not log
    # is None for its epochs.
    history, _ = training.fit(_model(metrics=None), _data(), _data(), epochs=6, run_dir=run,
                              verbose=0)
    assert {k: len(v) for k, v in history.items()} == {k: 6 for k in history}
    assert history["accuracy"][3:] == [None] * 3 and None not in history["accuracy"][:3]
    training.plot_curves(history, str(tmp_path / "curves.png"))  # None is not drawn


def test_backup_false_removes_an_interrupted_fits_backup(tmp_path):
    # It stayed, and a later fit with backup=True resumed it (its epochs, its
    # history) and replaced this run's better best.keras.
    run = str(tmp_path / "run")
    _interrupted(run)
    with pytest.warns(RuntimeWarning, match="removed the backup of an earlier, interrupted fit"):
        training.fit(_model(), _data(), _data(), epochs=2, run_dir=run, verbose=0,
                     backup=False)
    assert not os.path.exists(os.path.join(run, "backup"))
    history, _ = training.fit(_model(), _data(), _data(), epochs=2, run_dir=run, verbose=0)
    assert len(history["loss"]) == 2


def test_save_model_atomic_takes_keras_paths_only(tmp_path):
    # .h5 and extension-less paths got a .keras archive that loading refused.
    for name in ("m.h5", "m", "m.weights.h5"):
        with pytest.raises(ValueError, match="give a path ending in .keras"):
            training.save_model_atomic(_model(), str(tmp_path / name))
    assert os.listdir(tmp_path) == []


def test_plot_curves_takes_a_keras_history(tmp_path):
    model = _model()
    keras_history = model.fit(_data(), epochs=2, verbose=0)
    training.plot_curves(keras_history, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(json.dumps(training.history_to_dict(keras_history)))["loss"]


def test_checkpoint_mode_is_checked_and_min_for_an_accuracy_is_warned_about(tmp_path):
    # checkpoint_monitor="val_accuracy" with the default "min" kept the worst
    # epoch, silently; "auto" was refused as "mode='auto'", and without a
    # run_dir any mode passed. "auto" is now the default.
    with pytest.raises(ValueError, match=r"checkpoint_mode='best' is not allowed; use 'auto'"):
        training.fit(_model(), _data(), _data(), epochs=1, verbose=0, checkpoint_mode="best")
    with pytest.warns(RuntimeWarning, match=r"checkpoint_monitor='val_accuracy' with "
                                            r"checkpoint_mode='min' keeps the epoch with the "
                                            r"lowest accuracy"):
        training.fit(_model(), _data(), _data(), epochs=1, verbose=0,
                     run_dir=str(tmp_path / "run"), checkpoint_monitor="val_accuracy",
                     checkpoint_mode="min")
    with pytest.warns(RuntimeWarning, match=r"checkpoint_mode='max' keeps the epoch with the "
                                            r"highest loss; pass checkpoint_mode='min'"):
        training.fit(_model(), _data(), _data(), epochs=1, verbose=0,
                     run_dir=str(tmp_path / "run1"), checkpoint_mode="max")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        training.fit(_model(), _data(), _data(), epochs=1, verbose=0,
                     run_dir=str(tmp_path / "run2"), checkpoint_monitor="val_accuracy",
                     checkpoint_mode="max")


def test_the_default_auto_mode_keeps_the_best_epoch_of_a_score_or_a_loss(tmp_path):
    # The monitored values are set per epoch (the tiny model's accuracy
    # hardly moves): best.keras.json's best is the highest val_accuracy and
    # the lowest val_loss.
    values = [0.5, 0.9, 0.2, 0.7]

    class Logged(keras.callbacks.Callback):
        def __init__(self, key):
            super().__init__()
            self.key = key

        def on_epoch_end(self, epoch, logs=None):
            logs[self.key] = values[epoch]

    for monitor, mode, best in (("val_accuracy", "max", 0.9), ("val_loss", "min", 0.2)):
        run = tmp_path / monitor
        training.fit(_model(), _data(), _data(), epochs=4, run_dir=str(run), verbose=0,
                     checkpoint_monitor=monitor, callbacks=[Logged(monitor)])
        state = json.loads((run / "best.keras.json").read_text())
        assert (state["mode"], state["best"]) == (mode, best)
    for monitor, mode in (("val_auc", "max"), ("val_mAP", "max"), ("val_box_iou", "max"),
                          ("val_mape", "min"), ("val_mean_squared_error", "min"),
                          ("val_accuracy_loss", "min")):
        assert training._check_checkpoint_mode(monitor, "auto") == mode, monitor


def test_review_edge_cases_of_the_checkpoint_and_the_joined_logs(tmp_path):
    # A second review's findings: the mode warning took "mape" (lower is
    # better) for a higher-is-better value and missed "mAP" / "AUC"; the
    # checkpoint's flag was set only when training began; logs of unequal
    # length (an epoch without validation values) put values on the wrong
    # epochs.
    import warnings

    for monitor in ("val_mAP", "val_AUC", "val_iou@0.5"):
        with pytest.warns(RuntimeWarning, match="pass checkpoint_mode='max'"):
            training._check_checkpoint_mode(monitor, "min")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for monitor in ("val_mape", "val_loss", "val_mean_absolute_percentage_error"):
            training._check_checkpoint_mode(monitor, "min")
        # Without a run folder no checkpoint is kept: nothing to warn about.
        training.fit(_model(), _data(), _data(), epochs=1, verbose=0,
                     checkpoint_monitor="val_accuracy")
    checkpoint = training.AtomicModelCheckpoint(str(tmp_path / "b.keras"), monitor="val_x")
    checkpoint.set_model(_model())
    with pytest.warns(RuntimeWarning, match="monitor 'val_x' is not among"):
        checkpoint.on_epoch_end(0, {"loss": 1.0})
    joined = training._joined_logs({"loss": [1.0, 2.0, 3.0], "val_loss": [1.0, None, 3.0]},
                                   {"loss": [4.0], "accuracy": [0.5]})
    assert joined == {"loss": [1.0, 2.0, 3.0, 4.0], "val_loss": [1.0, None, 3.0, None],
                      "accuracy": [None, None, None, 0.5]}
    # The checkpoint's own state has one entry per epoch in every key.
    state = tmp_path / "state.json"
    checkpoint = training.AtomicModelCheckpoint(str(tmp_path / "c.keras"), state_path=str(state))
    checkpoint.set_model(_model())
    checkpoint.on_train_begin()
    with pytest.warns(RuntimeWarning):
        for logs in ({"loss": 1.0, "val_loss": 0.5}, {"loss": 0.9}, {"loss": 0.8, "val_loss": 0.4}):
            checkpoint.on_epoch_end(0, logs)
    assert json.loads(state.read_text())["logs"] == {"loss": [1.0, 0.9, 0.8],
                                                     "val_loss": [0.5, None, 0.4]}


def test_a_resume_with_no_epoch_left_returns_only_the_epochs_the_backup_kept(tmp_path):
    # The checkpoint's state may hold an epoch more than the backup (a Ctrl-C
    # between the two writes): with no epoch left to run it came back.
    run = str(tmp_path / "run")
    _interrupted(run)  # three epochs in the backup and the state
    state_path = os.path.join(run, training.BEST_STATE_FILE)
    state = json.loads(open(state_path).read())
    state["logs"] = {k: v + [v[-1]] for k, v in state["logs"].items()}  # a fourth
    open(state_path, "w").write(json.dumps(state))
    history, _ = training.fit(_model(), _data(), _data(), epochs=3, run_dir=run, verbose=0)
    assert {len(v) for v in history.values()} == {3}


def test_auto_mode_follows_keras_metric_directions_and_resumes_as_started(tmp_path):
    # Keras names IoU "io_u" / "mean_io_u" (the pattern missed them, so "auto"
    # kept the worst epoch); a metric's own direction decides where Keras
    # gives one. A fit interrupted under the earlier default ("min") resumes
    # with "auto" as it was started.
    import keras

    for monitor in ("val_io_u", "val_mean_io_u", "val_r2_score", "val_cosine_similarity",
                    "val_pearson_correlation", "val_sensitivity_at_specificity"):
        assert training._check_checkpoint_mode(monitor, "auto") == "max", monitor

    class Up(keras.metrics.Mean):
        def __init__(self, name="custom_score"):
            super().__init__(name=name)
            self._direction = "up"

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    training.compile_classifier(model, 2, jit_compile=False, metrics=[Up()])
    assert training._check_checkpoint_mode("val_custom_score", "auto", model=model) == "max"
    assert training._check_checkpoint_mode("val_custom_score", "auto") == "min"
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="checkpoint_mode='min' keeps"):
        _interrupted(str(run), checkpoint_monitor="val_accuracy", checkpoint_mode="min")
    with pytest.warns(RuntimeWarning, match=r"the interrupted fit kept its best by the lowest "
                                            r"val_accuracy \(checkpoint_mode='min', the default "
                                            r"then\); this resumed fit does the same"):
        history, _ = training.fit(_model(), _data(), _data(), epochs=6, run_dir=str(run),
                                  verbose=0, checkpoint_monitor="val_accuracy")
    assert len(history["loss"]) == 6
    assert json.loads((run / "best.keras.json").read_text())["mode"] == "min"
