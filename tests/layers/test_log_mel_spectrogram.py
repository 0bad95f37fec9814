import json
import os

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf import runtime
from mmtl_tf.layers.log_mel_spectrogram import LogMelSpectrogram, mel_filterbank

SETTINGS = [
    dict(n_fft=512, hop_length=160, n_mels=64, fmin=0.0, fmax=None),
    dict(n_fft=400, hop_length=160, n_mels=40, fmin=20.0, fmax=7600.0),
    dict(n_fft=512, hop_length=128, win_length=400, n_mels=80, fmin=50.0, fmax=8000.0),
    # Odd lengths: TF's "periodic" Hann window is not librosa's there.
    dict(n_fft=512, hop_length=160, win_length=401, n_mels=40, fmin=0.0, fmax=None),
    dict(n_fft=401, hop_length=160, n_mels=40, fmin=0.0, fmax=None),
]


def _librosa_log_mel(y, sr, pad_mode="constant", **kw):
    mel = librosa.feature.melspectrogram(y=y, sr=sr, pad_mode=pad_mode, htk=False,
                                         norm="slaney", window="hann", center=True,
                                         power=2.0, **kw)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T


def _assert_matches(ours, ref):
    assert ours.shape == ref.shape
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert rel <= 1e-3, rel
    # and element-wise: within 1e-3 of the 80 dB range
    assert np.max(np.abs(ours - ref)) <= 0.08


def _speech(n=3):
    """Bundled spoken-emoji clips (synthetic speech), loaded at 16 kHz."""
    recs = mmtl_tf.data.load_audio_text_records("default", "validation")
    return [mmtl_tf.data.read_audio(p)[0] for p in recs.paths[:n]]


@pytest.mark.parametrize("kw", SETTINGS)
def test_matches_librosa_on_bundled_speech(kw):
    for y in _speech():
        layer = LogMelSpectrogram(sample_rate=16000, **kw)
        ours = np.asarray(layer(y[None]))[0]
        _assert_matches(ours, _librosa_log_mel(y, 16000, **kw))


def _tuxpaint_english():
    from mmtl_tf.data.assets import cache_dir

    root = os.environ.get("MMTL_TF_TUXPAINT_SPEECH") or cache_dir("tuxpaint_speech")
    path = os.path.join(root, "captions.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [os.path.join(root, r["path"]) for r in rows if r["language"] == "en"]


def test_matches_librosa_on_real_speech():
    """Real recordings: Tux Paint's English stamp descriptions (built by
    data_prep/build_tuxpaint_speech.py; skipped where that has not run)."""
    files = _tuxpaint_english()
    if not files:
        pytest.skip("run data_prep/build_tuxpaint_speech.py for the real-speech check")
    for path in files[:5]:
        for sr in (16000, 22050):
            y, _ = mmtl_tf.data.read_audio(path, sample_rate=sr)
            for kw in SETTINGS[:2]:
                kw = dict(kw, fmax=None if kw["fmax"] is None else min(kw["fmax"], sr / 2))
                ours = np.asarray(LogMelSpectrogram(sample_rate=sr, **kw)(y[None]))[0]
                _assert_matches(ours, _librosa_log_mel(y, sr, **kw))


def test_reflect_padding_and_power_output_match_librosa():
    y = _speech(1)[0]
    ours = np.asarray(LogMelSpectrogram(sample_rate=16000, pad_mode="reflect")(y[None]))[0]
    _assert_matches(ours, _librosa_log_mel(y, 16000, pad_mode="reflect", n_fft=512,
                                           hop_length=160, n_mels=64))
    power = np.asarray(LogMelSpectrogram(sample_rate=16000, output="power")(y[None]))[0]
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160,
                                         n_mels=64).T
    assert np.linalg.norm(power - ref) / np.linalg.norm(ref) < 1e-5


@pytest.mark.parametrize("scale,norm", [("slaney", "slaney"), ("htk", None), ("htk", "slaney")])
def test_filterbank_matches_librosa(scale, norm):
    for n_fft in (1024, 551):  # an odd n_fft's last bin lies below rate / 2
        ours = mel_filterbank(22050, n_fft, 48, 30.0, 9000.0, mel_scale=scale, norm=norm)
        ref = librosa.filters.mel(sr=22050, n_fft=n_fft, n_mels=48, fmin=30.0, fmax=9000.0,
                                  htk=scale == "htk", norm=norm).T
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_window_is_scipys_periodic_hann_for_odd_and_even_lengths():
    import scipy.signal

    from mmtl_tf.layers.log_mel_spectrogram import periodic_hann

    for n in (5, 400, 401):
        np.testing.assert_allclose(periodic_hann(n), scipy.signal.get_window("hann", n),
                                   atol=1e-7)


def test_batch_xla_tf_data_and_mixed_precision_agree():
    y = np.stack([np.pad(c, (0, 24000 - len(c))) if len(c) < 24000 else c[:24000]
                  for c in _speech(3)]).astype("float32")
    layer = LogMelSpectrogram(sample_rate=16000, n_mels=40)
    eager = np.asarray(layer(y))
    assert eager.shape == (3, 1 + 24000 // 160, 40)
    assert layer.compute_output_shape((None, 24000)) == (None, 151, 40)
    xla = tf.function(layer, jit_compile=True)(tf.constant(y))
    np.testing.assert_allclose(xla, eager, atol=2e-3)
    mapped = next(iter(tf.data.Dataset.from_tensor_slices(y).batch(3).map(layer)))
    np.testing.assert_allclose(mapped, eager, atol=1e-4)
    # Each clip's own maximum sets its 80 dB floor: batching changes nothing.
    np.testing.assert_allclose(np.asarray(layer(y[1:2]))[0], eager[1], atol=1e-4)
    with runtime.settings(precision="mixed_float16"):
        mixed = LogMelSpectrogram(sample_rate=16000, n_mels=40)
        out = mixed(tf.constant(y))
        assert out.dtype == tf.float32
        np.testing.assert_allclose(out, eager, atol=1e-4)


def test_config_round_trip_and_bad_values():
    layer = LogMelSpectrogram(sample_rate=8000, n_fft=256, hop_length=80, n_mels=20,
                              fmin=10.0, fmax=3000.0, top_db=None)
    clone = LogMelSpectrogram.from_config(layer.get_config())
    x = np.random.default_rng(0).normal(size=(2, 4000)).astype("float32") * 0.1
    np.testing.assert_allclose(clone(x), layer(x))
    assert keras.saving.get_registered_object("mmtl_tf>LogMelSpectrogram") is LogMelSpectrogram
    with pytest.raises(ValueError, match="mel_scale='mel'"):
        LogMelSpectrogram(mel_scale="mel")
    with pytest.raises(ValueError, match="fmax"):
        LogMelSpectrogram(sample_rate=16000, fmax=9000)
    with pytest.raises(ValueError, match="win_length"):
        LogMelSpectrogram(n_fft=256, win_length=512)
    for rate in (0, -16000, 16000.5, True, "16000"):
        with pytest.raises(ValueError, match=rf"sample_rate must be an integer >= 1 .*got "
                                             rf"{rate!r}"):
            LogMelSpectrogram(sample_rate=rate)
    assert LogMelSpectrogram(sample_rate=np.int64(8000)).sample_rate == 8000


def test_stereo_and_too_short_clips_are_refused():
    # Channels-last stereo (2, 4000, 2) was read as time (output (2, 4000, 1, 16));
    # an empty clip became one frame of -100 dB.
    import keras

    layer = LogMelSpectrogram(sample_rate=16000, n_fft=256, hop_length=128, n_mels=16)
    w = np.zeros((2, 4000), "float32")
    with pytest.raises(ValueError, match=r"mono waveforms.*got shape \(2, 4000, 2\).*"
                                         r"Average multi-channel audio to mono"):
        layer(np.stack([w, w], -1))
    with pytest.raises(ValueError, match=r"mono waveforms.*\(None, None, 2\)"):
        layer(keras.Input((None, 2)))
    with pytest.raises(ValueError, match=r"at least 1 samples.*got shape \(2, 0\)"):
        layer(w[:, :0])
    assert layer(w[:, :1]).shape == (2, 1, 16) and layer(w[0]).shape == (32, 16)
    assert layer(keras.Input((None,))).shape == (None, None, 16)
    reflect = LogMelSpectrogram(n_fft=256, hop_length=128, n_mels=16, pad_mode="reflect")
    with pytest.raises(ValueError, match=r"at least 129 samples \(n_fft=256.*'reflect'"):
        reflect(w[:, :128])
    assert reflect(w[:, :129]).shape == (2, 2, 16)
    uncentred = LogMelSpectrogram(n_fft=256, hop_length=128, n_mels=16, center=False)
    with pytest.raises(ValueError, match=r"at least 256 samples"):
        uncentred(w[:, :255])
    assert uncentred(w[:, :256]).shape == (2, 1, 16)


@pytest.mark.parametrize("kwargs, message", [
    ({"top_db": 0}, r"top_db must be a positive number or None, got 0"),
    ({"top_db": -10.0}, r"top_db must be a positive number or None, got -10.0"),
    ({"power": 0}, r"power must be a positive number, got 0"),
    ({"power": float("nan")}, r"power must be a positive number, got nan"),
    ({"n_fft": 512.5}, r"n_fft must be an integer >= 1, got 512.5"),
    ({"hop_length": 0}, r"hop_length must be an integer >= 1, got 0"),
    ({"n_mels": True}, r"n_mels must be an integer >= 1, got True"),
    ({"win_length": 400.5}, r"win_length must be an integer >= 1, got 400.5"),
])
def test_settings_that_made_every_output_one_value_or_failed_when_called(kwargs, message):
    # top_db <= 0 gave one constant for every bin, power 0 every bin 1 (0 dB),
    # and a fractional n_fft failed only when called, in Keras' stft.
    with pytest.raises(ValueError, match=message):
        LogMelSpectrogram(**kwargs)


def test_top_db_none_and_a_positive_top_db_still_work():
    y = np.random.default_rng(0).normal(size=(1, 4000)).astype("float32")
    free = LogMelSpectrogram(top_db=None)(y).numpy()
    clipped = LogMelSpectrogram(top_db=20)(y).numpy()
    assert np.isclose(clipped.max() - clipped.min(), 20.0, atol=1e-3)
    assert free.max() - free.min() > 20.0


def test_whole_floats_infinite_top_db_and_power_output_are_accepted():
    # The new checks refused what worked before: hop_length=160.0,
    # top_db=inf (a saved config of it no longer loaded) and any top_db with
    # output="power", where it is not used.
    y = np.random.default_rng(1).normal(size=(1, 4000)).astype("float32")
    whole = LogMelSpectrogram(hop_length=160.0, win_length=400.0, n_fft=512.0)
    assert (whole.hop_length, whole.win_length, whole.n_fft) == (160, 400, 512)
    np.testing.assert_allclose(whole(y), LogMelSpectrogram(hop_length=160, win_length=400)(y))
    endless = LogMelSpectrogram(top_db=float("inf"))
    np.testing.assert_allclose(endless(y), LogMelSpectrogram(top_db=None)(y))
    assert LogMelSpectrogram.from_config(endless.get_config()).top_db == float("inf")
    LogMelSpectrogram(output="power", top_db=0)
