import numpy as np
import pytest

import mmtl_tf
from tests.encoders.test_audio_encoder import _waves
from tests.harness import run_model_test


def _inputs(n=6):
    rng = np.random.default_rng(0)
    return {"audio": _waves(n), "text": rng.integers(0, 30, (n, 5)).astype("int32")}


def test_harness_fusion_classifier():
    run_model_test(
        lambda: mmtl_tf.models.build_audio_text_fusion_classifier(
            num_samples=4000, n_mels=16, conv_filters=(4, 8), vocab_size=30,
            sequence_length=5, embedding_dim=8, lstm_units=4, hidden_units=8,
            num_classes=3),
        _inputs(), np.arange(6) % 3, loss="sparse_categorical_crossentropy",
        expected_output_shape=(6, 3))


@pytest.mark.slow
def test_harness_audio_classifier():
    run_model_test(
        lambda: mmtl_tf.models.build_audio_classifier(
            num_samples=4000, n_mels=16, conv_filters=(4, 8), num_classes=1,
            hidden_units=4, dropout=0.1),
        {"audio": _waves(6)}, (np.arange(6) % 2).astype("float32"),
        loss="binary_crossentropy", expected_output_shape=(6, 1))


def test_structure_and_bad_arguments():
    model = mmtl_tf.models.build_audio_text_fusion_classifier(
        num_samples=16000, vocab_size=100, sequence_length=8, num_classes=9)
    assert model.output.shape == (None, 9)
    assert model.input["audio"].shape == (None, 16000)
    fusion = model.get_layer("fusion")
    assert fusion.output.shape[-1] == 64 // 8 * 128 + 64
    assert model.get_layer("text_encoder").get_layer("lstm").use_cudnn in (False, "auto")
    with pytest.raises(ValueError, match="num_classes"):
        mmtl_tf.models.build_audio_text_fusion_classifier(num_classes=0)
    with pytest.raises(TypeError, match="AudioEncoder"):
        mmtl_tf.models.build_audio_text_fusion_classifier(audio_encoder="cnn")


@pytest.mark.slow
def test_fusion_classifier_beats_majority_on_held_out_items_and_voices():
    """Bundled spoken-emoji sample (synthetic speech): category of the spoken name."""
    import keras

    keras.utils.set_random_seed(0)
    train_recs = mmtl_tf.data.load_audio_text_records("default", "train")
    vec = mmtl_tf.data.make_text_vectorizer(train_recs.captions, vocab_size=2000,
                                            sequence_length=10)
    kw = dict(text_vectorizer=vec, clip_seconds=1.0, batch_size=64, seed=0)
    train = mmtl_tf.data.make_audio_text_dataset("default", "train", **kw)
    model = mmtl_tf.models.build_audio_text_fusion_classifier(
        num_samples=16000, vocab_size=2000, sequence_length=10, embedding_dim=32,
        lstm_units=16, n_mels=32, conv_filters=(8, 16), hidden_units=32, num_classes=9)
    mmtl_tf.training.compile_classifier(model, 9, learning_rate=3e-3)
    mmtl_tf.training.fit(model, train, epochs=6, verbose=0)
    test_recs = mmtl_tf.data.load_audio_text_records("default", "test")
    majority = mmtl_tf.training.majority_class_accuracy(train_recs.label_ids(),
                                                        test_recs.label_ids())
    for group in ("train", "heldout"):
        test = mmtl_tf.data.make_audio_text_dataset("default", "test", voice_group=group, **kw)
        acc = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
        assert acc > majority + 0.1, (group, acc, majority)


@pytest.mark.parametrize("build", ["fusion", "dual"])
def test_tower_settings_with_a_tower_of_your_own_are_refused(build):
    # audio_weights / audio_trainable="frozen" next to an audio_encoder were
    # ignored: the tower kept random weights and trained.
    tower = mmtl_tf.encoders.AudioEncoder(num_samples=8000, conv_filters=(8,))
    builder = {"fusion": mmtl_tf.models.build_audio_text_fusion_classifier,
               "dual": mmtl_tf.models.build_audio_text_dual_encoder}[build]
    for kwargs, named in (({"audio_trainable": "frozen"}, "audio_trainable='frozen'"),
                          ({"audio_weights": "a.keras"}, "audio_weights='a.keras'")):
        with pytest.raises(ValueError, match=f"{named} with an audio_encoder of your own"):
            builder(audio_encoder=tower, vocab_size=50, sequence_length=4, **kwargs)
    model = builder(audio_encoder=tower, vocab_size=50, sequence_length=4)
    assert tower in model.layers or tower in model._flatten_layers()


def test_n_fft_reaches_the_front_end():
    for model in (mmtl_tf.models.build_audio_text_fusion_classifier(
                      num_samples=8000, n_fft=1024, conv_filters=(8,), vocab_size=50),
                  mmtl_tf.models.build_audio_text_dual_encoder(
                      num_samples=8000, n_fft=1024, conv_filters=(8,), vocab_size=50)):
        front = [layer for layer in model._flatten_layers() if layer.name == "log_mel"]
        assert [layer.n_fft for layer in front] == [1024]


def test_too_few_mel_bands_for_the_pooling_blocks_is_named():
    with pytest.raises(ValueError, match=r"3 pooling blocks need at least 8 mel bands; got "
                                         r"n_mels=4"):
        mmtl_tf.encoders.AudioEncoder(num_samples=8000, n_mels=4, conv_filters=(8, 8, 8))


@pytest.mark.parametrize("build", ["fusion", "dual", "classifier"])
def test_tower_arguments_that_differ_from_a_tower_of_your_own_are_refused(build):
    # n_mels=40 beside a 64-mel AudioEncoder was ignored; the same value as
    # the tower's, or the builder's default, passes.
    tower = mmtl_tf.encoders.AudioEncoder(num_samples=8000, n_mels=32, conv_filters=(8,))
    builder = {"fusion": mmtl_tf.models.build_audio_text_fusion_classifier,
               "dual": mmtl_tf.models.build_audio_text_dual_encoder,
               "classifier": mmtl_tf.models.build_audio_classifier}[build]
    extra = {} if build == "classifier" else {"vocab_size": 50, "sequence_length": 4}
    with pytest.raises(ValueError, match=r"num_samples=16000 \(the tower's num_samples is "
                                         r"8000\), n_mels=40 \(the tower's n_mels is 32\): "
                                         r"the audio_encoder of your own decides"):
        builder(audio_encoder=tower, n_mels=40, num_samples=16000, **extra)
    builder(audio_encoder=tower, n_mels=32, num_samples=8000, conv_filters=[8], **extra)
    # One block as an int, or a NumPy array, is the tower's [8] too.
    builder(audio_encoder=tower, conv_filters=8, **extra)
    builder(audio_encoder=tower, conv_filters=np.array([8]), **extra)
