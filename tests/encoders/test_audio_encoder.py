
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.encoders import AudioEncoder
from tests.harness import run_model_test


def _waves(n=4, samples=4000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    freqs = rng.uniform(200, 3000, size=(n, 1))
    return (0.3 * np.sin(2 * np.pi * freqs * t) + 0.01 * rng.normal(size=(n, samples))
            ).astype("float32")


def test_harness_waveform_input():
    run_model_test(lambda: AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8)),
                   _waves(), np.zeros((4, 32), "float32"), loss="mse",
                   expected_output_shape=(4, 32), float32_outputs=False)
    # "time_avg" pooling: 16 mels / 2 / 2 = 4 bands × 8 filters = 32 features.


@pytest.mark.slow
def test_harness_log_mel_input_with_projection():
    enc = AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4,))
    mels = np.asarray(enc.front_end(_waves()))
    assert mels.shape == (4, 26, 16)
    run_model_test(lambda: AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4,),
                                        input_type="log_mel", output_dim=6, dropout=0.1),
                   mels, np.zeros((4, 6), "float32"), loss="mse",
                   expected_output_shape=(4, 6), float32_outputs=False)


def test_loudness_does_not_change_features():
    enc = AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8))
    x = _waves()
    np.testing.assert_allclose(enc(x * 0.1), enc(x), atol=2e-3)


def test_starts_from_a_trained_audio_classifier(tmp_path):
    clf = mmtl_tf.models.build_audio_classifier(num_samples=4000, num_classes=3, n_mels=16,
                                                conv_filters=(4, 8))
    clf.compile("adam", "sparse_categorical_crossentropy")
    clf.fit({"audio": _waves(8)}, np.arange(8) % 3, epochs=2, verbose=0)
    path = str(tmp_path / "clf.keras")
    clf.save(path)
    trained = clf.get_layer("audio_encoder")
    x = _waves(seed=1)
    enc = AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8), weights=path,
                       trainable="frozen")
    np.testing.assert_allclose(enc(x), trained(x), atol=1e-5)
    assert not enc.trainable_weights
    assert enc.get_config()["weights"] is None
    # .weights.h5 of an encoder works as well.
    trained.save_weights(str(tmp_path / "enc.weights.h5"))
    enc2 = AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8),
                        weights=str(tmp_path / "enc.weights.h5"))
    np.testing.assert_allclose(enc2(x), trained(x), atol=1e-5)
    # Inside the fusion model.
    fusion = mmtl_tf.models.build_audio_text_fusion_classifier(
        num_samples=4000, n_mels=16, conv_filters=(4, 8), vocab_size=20, sequence_length=3,
        num_classes=3, audio_weights=path, audio_trainable="frozen")
    np.testing.assert_allclose(fusion.get_layer("audio_encoder")(x), trained(x), atol=1e-5)
    with pytest.raises(ValueError, match="another configuration"):
        AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 16), weights=path)
    # Another front end or pooling leaves the shapes alike: it was accepted
    # (a 16-mel encoder's weights read 32-mel features without a word).
    for setting, words in ((dict(n_mels=32), "n_mels 16 there, 32 here"),
                           (dict(sample_rate=8000), "sample_rate 16000 there, 8000 here"),
                           (dict(hop_length=320), "hop_length 160 there, 320 here"),
                           (dict(fmax=4000.0), "fmax 8000.0 there, 4000.0 here")):
        kwargs = {"num_samples": 4000, "n_mels": 16, "conv_filters": (4, 8), **setting}
        with pytest.raises(ValueError, match="was built with other settings: " + words):
            AudioEncoder(weights=path, **kwargs)
    # Another clip length or input type keeps the meaning of the weights.
    longer = AudioEncoder(num_samples=8000, n_mels=16, conv_filters=(4, 8), weights=path)
    np.testing.assert_allclose(longer.get_weights()[0], trained.get_weights()[0])
    AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8), input_type="log_mel",
                 weights=path)
    # Another pooling reads the same conv features; fmax=None is the Nyquist
    # frequency, so an explicit 8000 at 16 kHz is the same front end.
    AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8), pooling="max", weights=path)
    AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8), fmax=8000.0, weights=path)
    with pytest.raises(FileNotFoundError):
        AudioEncoder(num_samples=4000, weights=str(tmp_path / "nope.keras"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_type='mfcc'"):
        AudioEncoder(input_type="mfcc")
    with pytest.raises(ValueError, match="num_samples"):
        AudioEncoder(num_samples=100)
    with pytest.raises(ValueError, match="frames"):
        AudioEncoder(num_samples=1000, conv_filters=(4, 4, 4, 4, 4))


FRESH = """
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], m.signatures["encode_audio"](waveform=tf.constant(x))["output_0"].numpy())
"""


def test_exported_encoder_takes_raw_waveforms_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    import tensorflow as tf

    from mmtl_tf.export import write_archive

    enc = AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4, 8))
    x = _waves(3, seed=2)
    np.save(tmp_path / "x.npy", x)

    @tf.function(input_signature=[tf.TensorSpec([None, 4000], tf.float32, name="waveform")])
    def encode_audio(waveform):
        return enc(waveform, training=False)

    path = write_archive(str(tmp_path / "saved"), {"encode_audio": encode_audio}, track=[enc])
    subprocess.run([sys.executable, "-c", FRESH, path, str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), enc(x), atol=1e-5)


def test_integer_pcm_is_refused_with_how_to_scale_it():
    import numpy as np
    import pytest

    import mmtl_tf

    pcm = np.zeros((1, 4000), "int16")
    with pytest.raises(TypeError, match=r"float tensor of samples in \[-1, 1\].*int16.*/ 32768"):
        mmtl_tf.layers.LogMelSpectrogram()(pcm)
    encoder = mmtl_tf.encoders.AudioEncoder(num_samples=4000, conv_filters=(4,))
    with pytest.raises(TypeError, match=r"AudioEncoder 'audio_encoder' expected a float tensor"):
        encoder.predict(pcm, verbose=0)
    assert encoder.predict(pcm.astype("float32") / 32768, verbose=0).shape[0] == 1
