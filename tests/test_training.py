import json
import os

import keras
import pytest

import mmtl_tf
from mmtl_tf import training
from mmtl_tf.data.sources import load_image_text_records


def test_fusion_model_learns_the_bundled_data_above_chance():
    keras.utils.set_random_seed(0)
    train = load_image_text_records("default", "train")
    test = load_image_text_records("default", "test")
    vec = mmtl_tf.data.make_text_vectorizer(train.captions, vocab_size=2000, sequence_length=12)
    data = {s: mmtl_tf.data.make_image_text_dataset("default", s, text_vectorizer=vec,
                                                    image_size=(32, 32), batch_size=32)
            for s in ("train", "test")}
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(32, 32, 3), vocab_size=2000, sequence_length=12, embedding_dim=32,
        lstm_units=32, conv_filters=16, hidden_units=32, num_classes=9)
    training.compile_classifier(model, 9, learning_rate=3e-3)
    history, _ = training.fit(model, data["train"], epochs=4, verbose=0)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    accuracy = model.evaluate(data["test"], verbose=0, return_dict=True)["accuracy"]
    majority = training.majority_class_accuracy(train.label_ids(), test.label_ids())
    assert majority < 0.25
    assert accuracy > majority + 0.2, (accuracy, majority)


def test_atomic_checkpoint_keeps_the_last_good_file(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "best.keras")
    cb = training.AtomicModelCheckpoint(path, monitor="loss")
    cb.set_model(model)
    cb.on_epoch_end(0, {"loss": 1.0})
    good = open(path, "rb").read()
    cb.on_epoch_end(1, {"loss": 2.0})  # worse: not saved
    assert open(path, "rb").read() == good and cb.best == 1.0

    def failing_save(p, *a, **k):
        open(p, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", failing_save)
    with pytest.raises(OSError):
        cb.on_epoch_end(2, {"loss": 0.5})
    assert open(path, "rb").read() == good
    assert sorted(os.listdir(tmp_path)) == ["best.keras"]


def test_history_json_and_curves(tmp_path):
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.4, 0.8]}
    training.atomic_write_json(history, tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text()) == history
    training.plot_curves(history, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_of_a_history_without_training_values(tmp_path):
    for i, history in enumerate(({}, {"val_loss": [1.0, 0.9]})):
        training.plot_curves(history, str(tmp_path / f"{i}.png"))
        assert (tmp_path / f"{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_on_data_without_one_batch_is_a_data_error(tmp_path):
    import numpy as np
    import tensorflow as tf

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    rows = tf.data.Dataset.from_tensor_slices((np.zeros((3, 2), "float32"),
                                               np.zeros((3, 1), "float32")))
    val = rows.batch(2)
    # Known to be empty up front, and found empty only by running (unknown size).
    for train in (rows.batch(4, drop_remainder=True),
                  rows.filter(lambda x, y: tf.reduce_all(x > 0)).batch(4)):
        with pytest.raises(mmtl_tf.DataError, match="yielded no batch"):
            training.fit(model, train, val, epochs=1, run_dir=str(tmp_path), verbose=0,
                         backup=False)


def test_majority_class_accuracy():
    assert training.majority_class_accuracy([0, 1, 1, 2], [1, 1, 0, 2]) == 0.5


def test_a_resumed_fit_keeps_a_better_best_and_returns_every_epoch(tmp_path):
    # Resuming through BackupAndRestore restarted AtomicModelCheckpoint.best at
    # None: the first resumed epoch (val_loss 0.9) replaced the best.keras of
    # epoch 1 (0.5), and the history held only the resumed epochs.
    import numpy as np
    import tensorflow as tf

    fake, weights = {0: 1.0, 1: 0.5, 2: 0.9, 3: 0.8}, {}

    class Script(keras.callbacks.Callback):
        def __init__(self, crash_at=None):
            super().__init__()
            self.crash_at = crash_at

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == self.crash_at:
                raise KeyboardInterrupt("simulated Ctrl-C")

        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = fake[epoch]
            weights[epoch] = self.model.get_weights()[0]

    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, (x.sum(1) > 2).astype("int32"))).batch(16)

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        return training.compile_classifier(m, 2, jit_compile=False)

    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        training.fit(model(), data, data, epochs=4, run_dir=run, callbacks=[Script(2)],
                     verbose=0)
    history, _ = training.fit(model(), data, data, epochs=4, run_dir=run,
                              callbacks=[Script()], verbose=0)
    best = keras.saving.load_model(os.path.join(run, "best.keras")).get_weights()[0]
    assert np.allclose(best, weights[1]) and not np.allclose(best, weights[2])
    assert {k: len(v) for k, v in history.items()} == {k: 4 for k in history}
    assert history["val_loss"][:2] == [1.0, 0.5]
    # A new fit in the same folder (nothing to resume) starts from no best.
    training.fit(model(), data, data, epochs=1, run_dir=run, callbacks=[Script()], verbose=0)
    best = keras.saving.load_model(os.path.join(run, "best.keras")).get_weights()[0]
    assert np.allclose(best, weights[0])


def _three_class_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))


def test_compile_classifier_compiles_every_metric_asked_for():
    import numpy as np

    x, y = np.zeros((6, 3), "float32"), np.arange(6) % 3
    model = training.compile_classifier(
        _three_class_model(), 3, jit_compile=False,
        metrics=("accuracy", "sparse_top_k_categorical_accuracy",
                 keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")))
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert {"loss", "accuracy", "sparse_top_k_categorical_accuracy", "top2"} <= set(logs)
    inputs = keras.Input((3,))
    binary = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    training.compile_classifier(binary, 1, jit_compile=False, metrics=["accuracy", "auc"])
    logs = binary.evaluate(x, (y > 0).astype("float32"), verbose=0, return_dict=True)
    assert {"loss", "accuracy", "auc"} <= set(logs)


def test_compile_classifier_names_a_metric_it_cannot_use():
    with pytest.raises(ValueError, match=r"'auc' cannot be used with num_classes=3"):
        training.compile_classifier(_three_class_model(), 3, metrics=("accuracy", "auc"))
    with pytest.raises(ValueError, match=r"'no_such_metric' is not a Keras metric name"):
        training.compile_classifier(_three_class_model(), 3, metrics=["no_such_metric"])
    inputs = keras.Input((3,))
    binary = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    with pytest.raises(ValueError, match=r"cannot be used with num_classes=1"):
        training.compile_classifier(binary, 1, metrics=[keras.metrics.SparseCategoricalAccuracy()])


def test_compile_classifier_says_which_labels_it_takes():
    import numpy as np
    import tensorflow as tf

    x = np.zeros((6, 3), "float32")
    model = training.compile_classifier(_three_class_model(), 3, jit_compile=False)
    with pytest.raises(ValueError, match=r"labels of shape \(None, 3\) do not fit .* int class "
                                         r"ids of shape \(N,\) or \(N, 1\)\. They look one-hot"):
        model.fit(x, np.eye(3)[np.arange(6) % 3], verbose=0)
    # Keras keeps the step that failed to build: the same model's next fit
    # fails on the right labels too, as the message says, until compiled again.
    with pytest.raises(ValueError, match="non-first call"):
        model.fit(x, np.arange(6) % 3, verbose=0)
    training.compile_classifier(model, 3, jit_compile=False)
    assert np.isfinite(model.fit(x, np.arange(6) % 3, verbose=0).history["loss"][-1])
    # mmtl_tf.training.fit drops that step itself: no compile needed after it.
    model = training.compile_classifier(_three_class_model(), 3, jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(3, dtype="float32")[np.arange(6) % 3]))
    with pytest.raises(ValueError, match="compile the model again before your next model.fit"):
        training.fit(model, ds.batch(3), verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(6) % 3))
    history, _ = training.fit(model, ds.batch(3), verbose=0)
    assert np.isfinite(history["loss"][-1])
    for labels in (np.arange(6) % 3, (np.arange(6) % 3)[:, None]):  # still train, with XLA
        model = training.compile_classifier(_three_class_model(), 3, jit_compile=True)
        assert np.isfinite(model.fit(x, labels, verbose=0).history["loss"][-1])


def test_classifier_losses_survive_saving(tmp_path):
    import numpy as np

    model = training.compile_classifier(_three_class_model(), 3, jit_compile=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # mmtl_tf.training registered it
    assert type(loaded.loss).__name__ == "ClassIdCrossentropy"
    with pytest.raises(ValueError, match="They look one-hot"):
        loaded.evaluate(np.zeros((6, 3), "float32"), np.eye(3)[np.arange(6) % 3], verbose=0)


@pytest.mark.parametrize("num_classes,message", [
    (1, r"has one sigmoid output, but the training data has 9 classes \(Activities, "),
    (4, r"has 4 outputs, but the training data has 9 classes .*num_classes=9"),
])
def test_fit_refuses_a_classifier_with_fewer_outputs_than_the_data_has_classes(
        tmp_path, num_classes, message):
    # The README's flow with the builders' default num_classes=1 on the 9
    # bundled classes: Keras trains it without an error.
    train = mmtl_tf.data.make_image_text_dataset(
        "default", "validation", image_size=(16, 16), sequence_length=4, batch_size=64)
    assert len(train.class_names) == 9
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(16, 16, 3), vocab_size=64, sequence_length=4, embedding_dim=4,
        lstm_units=4, conv_filters=4, hidden_units=4, num_classes=num_classes)
    training.compile_classifier(model, num_classes)
    with pytest.raises(ValueError, match=message):
        training.fit(model, train, epochs=1, verbose=0, run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_fit_takes_a_classifier_with_as_many_or_more_outputs_than_classes():
    import numpy as np
    import tensorflow as tf

    x = np.zeros((8, 2), "float32")
    for outputs, labels, names in ((3, np.arange(8) % 3, ["a", "b", "c"]),
                                   (5, np.arange(8) % 3, ["a", "b", "c"]),
                                   (1, np.arange(8) % 2, ["no", "yes"])):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
            outputs, activation="sigmoid" if outputs == 1 else "softmax")])
        training.compile_classifier(model, outputs)
        ds = tf.data.Dataset.from_tensor_slices((x, labels.astype("int32"))).batch(4)
        ds.class_names = names
        history, _ = training.fit(model, ds, epochs=1, verbose=0)
        assert len(history["loss"]) == 1
    # A model compiled with another loss (an embedding, say) is not checked.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(8.0, dtype="float32"))).batch(4)
    ds.class_names = list("abcdefgh")
    training.fit(model, ds, epochs=1, verbose=0)


def test_fit_refuses_a_vectorizer_larger_than_the_models_embedding(tmp_path):
    # It failed deep in the Embedding's gather ("indices[0,4] = 12 is not in
    # [0, 10)"); export already checked this.
    train = mmtl_tf.data.make_image_text_dataset(
        "default", "validation", image_size=(16, 16), sequence_length=4, batch_size=64,
        vocab_size=40)
    size = train.text_vectorizer.vocabulary_size()
    assert size > 10
    for vocab_size, refused in ((10, True), (size, False)):
        model = mmtl_tf.models.build_fusion_classifier(
            image_shape=(16, 16, 3), vocab_size=vocab_size, sequence_length=4, embedding_dim=4,
            lstm_units=4, conv_filters=4, hidden_units=4, num_classes=9)
        training.compile_classifier(model, 9)
        if refused:
            with pytest.raises(ValueError, match=rf"^the text vectorizer has {size} tokens .* "
                                                 r"takes ids below 10 \(vocab_size=10\)"):
                training.fit(model, train, epochs=1, verbose=0, run_dir=str(tmp_path / "run"))
            assert not (tmp_path / "run").exists()
        else:   # the dataset itself, so that the check runs (take() drops the attribute)
            history, _ = training.fit(model, train, epochs=1, verbose=0)
            assert len(history["loss"]) == 1
