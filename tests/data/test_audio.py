import os

import librosa
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

import mmtl_tf
from mmtl_tf.data import audio as A


def _tone(seconds=0.5, rate=16000, freq=440.0, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("float32")


def _word(rate=16000):
    """0.3 s silence, 0.5 s of a two-tone 'word', 0.4 s silence."""
    return np.concatenate([np.zeros(int(0.3 * rate)), _tone(0.5, rate) + _tone(0.5, rate, 1200, 0.2),
                           np.zeros(int(0.4 * rate))]).astype("float32")


# --- loading ---------------------------------------------------------------

def test_wrong_rate_and_stereo_are_resampled_and_downmixed(tmp_path):
    left, right = _tone(0.5, 44100, 440), _tone(0.5, 44100, 880, 0.25)
    path = str(tmp_path / "stereo.wav")
    sf.write(path, np.stack([left, right], 1), 44100, subtype="FLOAT")
    y, rate = A.read_audio(path, 16000)
    assert rate == 16000 and y.dtype == np.float32 and y.ndim == 1
    ref = librosa.resample((left + right) / 2, orig_sr=44100, target_sr=16000,
                           res_type="soxr_hq")
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert abs(len(y) - 8000) <= 1


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"),
                                          ("OGG", "VORBIS"), ("OGG", "OPUS")])
def test_formats(tmp_path, fmt, subtype):
    path = str(tmp_path / f"clip.{fmt.lower()}")
    y = _word()
    sf.write(path, y, 16000, format=fmt, subtype=subtype)
    out, rate = A.read_audio(path)
    assert rate == 16000 and abs(len(out) - len(y)) < 400
    # Lossy codecs change samples but keep the loudness.
    assert abs(np.std(out[:len(y)]) - np.std(y)) < 0.02


def _bad_files(root):
    """name -> expected words in the DataError."""
    os.makedirs(root, exist_ok=True)
    open(os.path.join(root, "empty.wav"), "wb").close()
    with open(os.path.join(root, "corrupt.ogg"), "wb") as f:
        f.write(b"OggS" + bytes(range(256)) * 4)
    nan = _word()
    nan[100] = np.nan
    nan[200] = np.inf
    sf.write(os.path.join(root, "nan.wav"), nan, 16000, subtype="FLOAT")
    sf.write(os.path.join(root, "silent.wav"), np.zeros(16000, "float32"), 16000)
    sf.write(os.path.join(root, "short.wav"), _tone(0.01), 16000)  # 160 samples
    sf.write(os.path.join(root, "good.flac"), _word(), 16000)
    # A WAV cut half-way (an interrupted download): libsndfile reads the half.
    # 1.2 s of 16-bit samples = 38,400 bytes after a 44-byte header; half of
    # the 38,444-byte file leaves 19,222 - 44 = 19,178 bytes of samples.
    sf.write(os.path.join(root, "whole.wav"), _word(), 16000, subtype="PCM_16")
    with open(os.path.join(root, "whole.wav"), "rb") as f:
        whole = f.read()
    with open(os.path.join(root, "truncated.wav"), "wb") as f:
        f.write(whole[:len(whole) // 2])
    return {"empty.wav": "empty file", "corrupt.ogg": "cannot decode audio",
            "truncated.wav": "truncated WAV file (the header declares 38,400 bytes of "
                             "samples, the file holds 19,178)",
            "nan.wav": "2 NaN or infinite", "silent.wav": "all silent",
            "short.wav": "shorter than one FFT window", "missing.wav": "file not found"}


def test_bad_files_raise_data_error_naming_file_and_problem(tmp_path):
    expected = _bad_files(str(tmp_path))
    for name, words in expected.items():
        path = str(tmp_path / name)
        with pytest.raises(mmtl_tf.DataError) as err:
            A.load_and_trim(path, min_samples=512)
        assert path in str(err.value) and words in str(err.value), str(err.value)
    assert len(A.load_and_trim(str(tmp_path / "good.flac"), min_samples=512)) > 0
    # The whole WAV reads; so does one whose data size was never filled in (a
    # streaming recorder's 0xFFFFFFFF), which tells nothing about truncation.
    whole, _ = A.read_audio(str(tmp_path / "whole.wav"))
    assert len(whole) == len(_word())
    data = open(tmp_path / "whole.wav", "rb").read()
    at = data.index(b"data") + 4
    with open(tmp_path / "streamed.wav", "wb") as f:
        f.write(data[:at] + b"\xff\xff\xff\xff" + data[at + 4:])
    streamed, _ = A.read_audio(str(tmp_path / "streamed.wav"))
    np.testing.assert_array_equal(streamed, whole)
    # Without trimming, a clip of zeros is still an error; a folder is named as one.
    with pytest.raises(mmtl_tf.DataError, match="silent.wav: all silent"):
        A.load_and_trim(str(tmp_path / "silent.wav"), trim=False)
    assert len(A.load_and_trim(str(tmp_path / "short.wav"), trim=False)) == 160
    os.mkdir(tmp_path / "folder.wav")
    with pytest.raises(mmtl_tf.DataError, match="folder.wav: a folder, not an audio file"):
        A.load_and_trim(str(tmp_path / "folder.wav"))


def test_stereo_channels_that_cancel_in_the_mono_mix_are_named_as_such(tmp_path):
    # Left = -right averaged to zeros, reported as "all silent (loudest frame
    # -96.4 dBFS ...)" of an audible file (found by a helper).
    word = _word()
    path = str(tmp_path / "antiphase.wav")
    sf.write(path, np.stack([word, -word], axis=1), 16000, subtype="PCM_16")
    with pytest.raises(mmtl_tf.DataError, match=r"antiphase.wav: its 2 channels cancel out "
                                                 r"when averaged to mono \(loudest sample 0\.69"):
        A.read_audio(path)
    # Channels that differ, or one silent channel, still average to mono.
    sf.write(path, np.stack([word, 0.5 * word], axis=1), 16000, subtype="PCM_16")
    np.testing.assert_allclose(A.read_audio(path)[0], 0.75 * word, atol=1e-4)
    sf.write(path, np.stack([word, np.zeros_like(word)], axis=1), 16000, subtype="PCM_16")
    np.testing.assert_allclose(A.read_audio(path)[0], 0.5 * word, atol=1e-4)
    # A quiet file that is nearly silent in every channel is still "all silent".
    sf.write(path, np.stack([1e-5 * word, -1e-5 * word], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(mmtl_tf.DataError, match="all silent"):
        A.load_and_trim(path)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_mp3_reads_and_a_cut_or_fake_one_is_named(tmp_path):
    y = np.concatenate([_word(), _word()])
    sf.write(tmp_path / "clip.mp3", y, 16000, format="MP3")
    out, rate = A.read_audio(str(tmp_path / "clip.mp3"))
    assert rate == 16000 and abs(len(out) - len(y)) < 2000
    # Cut half-way (an interrupted download): the Xing header counts every
    # frame, the decoder stops early without an error.
    whole = (tmp_path / "clip.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(mmtl_tf.DataError, match=r"cut\.mp3: truncated or corrupt audio \(the "
                                                r"header declares [\d,]+ samples, [\d,]+ could"):
        A.read_audio(str(tmp_path / "cut.mp3"))
    # Bytes of no format: not libsndfile's "File does not exist or is not a
    # regular file (possibly a pipe?)".
    (tmp_path / "fake.mp3").write_bytes(b"ID3\x03\x00" + bytes(500))
    with pytest.raises(mmtl_tf.DataError, match=r"fake\.mp3: cannot decode audio \(not an "
                                                r"audio format libsndfile reads"):
        A.read_audio(str(tmp_path / "fake.mp3"))


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_a_complete_vbr_mp3_without_a_xing_header_reads(tmp_path):
    # Without a Xing/Info header libsndfile only estimates the length (file
    # size / first frame's bitrate): a complete VBR file was refused as
    # "truncated" (the header declares 759,223 samples, 222,336 decoded).
    rng = np.random.default_rng(1)
    y = np.concatenate([np.zeros(44100), 0.5 * rng.standard_normal(44100 * 4)]).clip(-1, 1)
    sf.write(tmp_path / "vbr.mp3", y, 44100, format="MP3", bitrate_mode="VARIABLE",
             compression_level=0.0)
    whole = (tmp_path / "vbr.mp3").read_bytes()
    assert b"Xing" in whole[:400] or b"Info" in whole[:400]
    # The first frame holds the Xing header: start at the next frame's sync word.
    second = next(j for j in range(4, len(whole) - 1)
                  if whole[j] == 0xFF and whole[j + 1] == whole[1])
    (tmp_path / "noxing.mp3").write_bytes(whole[second:])
    out, _ = A.read_audio(str(tmp_path / "noxing.mp3"), 44100)
    assert abs(len(out) - len(y)) < 44100 // 10
    # With the header, a file cut in half is still refused.
    (tmp_path / "cut.mp3").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(mmtl_tf.DataError, match=r"cut\.mp3: truncated or corrupt audio"):
        A.read_audio(str(tmp_path / "cut.mp3"))


@pytest.mark.parametrize("subtype, rate", [("VORBIS", 16000), ("OPUS", 48000)])
def test_a_truncated_ogg_file_is_named(tmp_path, subtype, rate):
    # libsndfile decoded a cut Ogg file as a shorter clip, without an error.
    y = np.tile(np.concatenate([_word(), _word()]), 2)
    if rate != 16000:
        y = np.repeat(y, rate // 16000)
    sf.write(tmp_path / "full.ogg", y, rate, format="OGG", subtype=subtype)
    whole = (tmp_path / "full.ogg").read_bytes()
    assert len(A.read_audio(str(tmp_path / "full.ogg"))[0]) > 0
    for fraction in (0.5, 0.9):
        cut = tmp_path / f"cut{fraction}.ogg"
        cut.write_bytes(whole[:int(len(whole) * fraction)])
        with pytest.raises(mmtl_tf.DataError, match=r"truncated Ogg file \(its last page is "
                                                    r"cut short\)"):
            A.read_audio(str(cut))
    # Cut exactly at a page boundary: whole pages, but no end-of-stream page.
    last = whole.rfind(b"OggS")
    (tmp_path / "pages.ogg").write_bytes(whole[:last])
    with pytest.raises(mmtl_tf.DataError, match="ends without the end-of-stream page"):
        A.read_audio(str(tmp_path / "pages.ogg"))


def test_the_bundled_ogg_clips_are_whole():
    import glob

    clips = glob.glob(os.path.join(os.path.dirname(A.__file__), "default_audio", "clips",
                                   "*", "*.ogg"))
    assert len(clips) > 2000
    assert [c for c in clips if A._ogg_truncation(c)] == []


def test_faint_noise_is_all_silent_but_quiet_speech_is_not():
    noise = np.random.default_rng(0).normal(size=16000).astype("float32") * 1e-5
    with pytest.raises(mmtl_tf.DataError, match="all silent"):
        A.trim_silence_array(noise, name="noise.wav")
    quiet = _word() * 0.01  # -46 dBFS peak: quiet, not silent
    assert 7000 < len(A.trim_silence_array(quiet)) < 10000


# --- steps -----------------------------------------------------------------

def test_trim_silence_matches_librosa_in_tf_data():
    y = _word()
    ref, _ = librosa.effects.trim(y, top_db=40, frame_length=1024, hop_length=256)
    ds = tf.data.Dataset.from_tensors(y).map(A.trim_silence)
    assert ds.element_spec.shape.as_list() == [None]
    np.testing.assert_array_equal(next(iter(ds)).numpy(), ref)
    assert 8000 <= len(ref) < 8000 + 2 * 1024


def test_short_clips_are_trimmed_alike_in_training_and_in_the_graph():
    # Clips of 512..1023 samples (accepted with min_samples=512) were trimmed
    # with frames of the clip's length in training, of 1,024 in the graph.
    rng = np.random.default_rng(0)
    for n in (600, 900, 1023):
        y = (1e-3 * rng.standard_normal(n)).astype("float32")
        y[n // 2:n // 2 + 200] += 0.5 * np.sin(np.arange(200) * 0.3).astype("float32")
        ref, _ = librosa.effects.trim(y, top_db=40, frame_length=1024, hop_length=256)
        trained = A.trim_silence_array(y, 40.0, min_samples=512)
        np.testing.assert_array_equal(trained, ref, err_msg=f"{n} samples")
        graph = mmtl_tf.data.trim_and_crop_batch(y[None], 1600).numpy()[0]
        np.testing.assert_array_equal(graph, A.crop_or_pad(trained, 1600).numpy(),
                                      err_msg=f"{n} samples")


def test_crop_or_pad_closed_form():
    y = np.arange(1, 8, dtype="float32")  # 7 samples
    assert A.crop_or_pad(y, 3).numpy().tolist() == [3, 4, 5]
    assert A.crop_or_pad(y, 3, "start").numpy().tolist() == [1, 2, 3]
    assert A.crop_or_pad(y, 10).numpy().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 0]
    assert A.crop_or_pad(y, 9, "start").numpy().tolist() == [1, 2, 3, 4, 5, 6, 7, 0, 0]
    seed = tf.constant([1, 2], tf.int64)
    r = A.crop_or_pad(y, 4, "random", seed).numpy()
    assert r.tolist() == A.crop_or_pad(y, 4, "random", seed).numpy().tolist()
    start = int(r[0]) - 1
    assert r.tolist() == y[start:start + 4].tolist()
    padded = A.crop_or_pad(y, 12, "random", seed).numpy()
    nz = np.flatnonzero(padded)
    assert padded[nz].tolist() == y.tolist() and nz[-1] - nz[0] == 6
    ds = tf.data.Dataset.from_tensors(y).map(lambda w: A.crop_or_pad(w, 5))
    assert ds.element_spec.shape.as_list() == [5]
    with pytest.raises(ValueError, match="mode='middle'"):
        A.crop_or_pad(y, 3, "middle")


def test_mu_law_and_log_compression_closed_form():
    x = np.array([-1.0, -0.5, -0.01, 0.0, 0.01, 0.5, 1.0], "float32")
    expected = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log(256)
    np.testing.assert_allclose(A.mu_law_compress(x), expected, atol=1e-6)
    np.testing.assert_allclose(A.mu_law_expand(A.mu_law_compress(x)), x, atol=1e-5)
    q = A.mu_law_compress(x, quantize=True).numpy()
    levels = (q + 1) / 2 * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    np.testing.assert_allclose(A.log_compress(x, 100.0),
                               np.sign(x) * np.log1p(100 * np.abs(x)), atol=1e-6)


@pytest.mark.parametrize("sample_rate", [0, -16000, 16000.5, "16000", True])
def test_a_bad_sample_rate_is_named_before_the_file_is_read(tmp_path, sample_rate):
    # read_audio(path, 0) kept the file's rate (0 is falsy), -16000 failed in
    # soxr, 16000.5 was accepted; band_pass(..., 0, ...) said "need 0 <= low_hz
    # < high_hz <= sample_rate / 2 = 0". The file does not exist: the argument
    # is checked first.
    path = str(tmp_path / "missing.wav")
    message = rf"^sample_rate must be an integer >= 1, got {sample_rate!r}".replace(".", r"\.")
    for call in (lambda: A.read_audio(path, sample_rate),
                 lambda: A.load_and_trim(path, sample_rate),
                 lambda: A.load_audio(tf.constant(path), sample_rate),
                 lambda: A.band_pass(np.zeros(1600, "float32"), sample_rate, 0, 100)):
        with pytest.raises(ValueError, match=message):
            call()


def test_none_and_numpy_integer_sample_rates_are_still_accepted(tmp_path):
    path = str(tmp_path / "tone.wav")
    sf.write(path, _tone(0.5, 22050), 22050)
    assert A.read_audio(path, None)[1] == 22050              # None keeps the file's rate
    y, rate = A.read_audio(path, np.int64(16000))
    assert (rate, len(y)) == (16000, 8000)
    assert A.band_pass(np.zeros(1600, "float32"), np.int32(16000), 0, 100).shape == (1600,)


def test_pre_emphasis_and_band_pass():
    y = np.random.default_rng(0).normal(size=(2, 1000)).astype("float32")
    ref = np.concatenate([y[:, :1], y[:, 1:] - 0.97 * y[:, :-1]], axis=1)
    np.testing.assert_allclose(A.pre_emphasis(y), ref, atol=1e-6)
    t = np.arange(16000) / 16000
    low, mid, high = (np.sin(2 * np.pi * f * t) for f in (50, 1000, 7000))
    out = A.band_pass((low + mid + high).astype("float32"), 16000, 300, 3000).numpy()
    np.testing.assert_allclose(out, mid, atol=1e-3)  # only the 1 kHz tone is left
    with pytest.raises(ValueError, match="high_hz"):
        A.band_pass(mid, 16000, 300, 9000)


def test_preprocess_waveform_order_and_shape():
    y = _word()
    out = A.preprocess_waveform(y, 16000, pre_emphasis_coefficient=0.97,
                                band=(80, 7000), compression="mu_law")
    manual = A.mu_law_compress(A.crop_or_pad(A.band_pass(A.pre_emphasis(y), 16000, 80, 7000),
                                             16000))
    np.testing.assert_allclose(out, manual, atol=1e-6)
    assert out.shape == (16000,)
    with pytest.raises(ValueError, match="compression='alaw'"):
        A.preprocess_waveform(y, 100, compression="alaw")


def test_trim_and_crop_batch_matches_librosa_trim_then_center_crop():
    # Real clips of different lengths, zero-padded into one batch, plus the
    # synthetic word; the graph version must cut where librosa.effects.trim
    # cuts and then centre-crop / pad like crop_or_pad(mode="center").
    records = mmtl_tf.data.load_audio_text_records("default", "test")
    clips = [A.read_audio(p, 16000)[0] for p in records.paths[:5]] + [_word()]
    batch = np.zeros((len(clips), max(len(c) for c in clips)), "float32")
    for i, c in enumerate(clips):
        batch[i, :len(c)] = c
    lengths = np.array([len(c) for c in clips])
    for length in (8000, 24000):
        got = mmtl_tf.data.trim_and_crop_batch(batch, length, lengths=lengths).numpy()
        assert got.shape == (len(clips), length)
        # Without lengths a row ends at its last non-zero sample: the same for
        # the recorded clips, earlier for the word (which ends in exact zeros).
        guessed = mmtl_tf.data.trim_and_crop_batch(batch, length).numpy()
        np.testing.assert_array_equal(guessed[:5], got[:5])
        for i, c in enumerate(clips):
            trimmed, _ = librosa.effects.trim(c, top_db=40, frame_length=1024, hop_length=256)
            want = A.crop_or_pad(trimmed, length).numpy()
            np.testing.assert_array_equal(got[i], want, err_msg=f"clip {i}, length {length}")
    # Without trimming every row is used whole (batch padding included).
    whole = mmtl_tf.data.trim_and_crop_batch(batch[:1], 8000, trim=False).numpy()[0]
    np.testing.assert_array_equal(whole, A.crop_or_pad(batch[0], 8000).numpy())
    # Inside a tf.function with an unknown batch and length (as in a SavedModel).
    fn = tf.function(lambda w: mmtl_tf.data.trim_and_crop_batch(w, 8000),
                     input_signature=[tf.TensorSpec([None, None], tf.float32)])
    np.testing.assert_array_equal(fn(batch).numpy(),
                                  mmtl_tf.data.trim_and_crop_batch(batch, 8000).numpy())
    assert np.all(mmtl_tf.data.trim_and_crop_batch(np.zeros((2, 500), "float32"), 100) == 0)
    with pytest.raises(ValueError, match="length must be >= 1"):
        mmtl_tf.data.trim_and_crop_batch(batch, 0)


def test_load_audio_called_directly_raises_the_data_error_for_a_plain_path(tmp_path):
    # A str path (which works for good files) gave TensorFlow's
    # InvalidArgumentError "Expected 'tf.Tensor(False...)' to be true" for a
    # bad one, which `except mmtl_tf.DataError` did not catch.
    import mmtl_tf

    good = str(tmp_path / "tone.wav")
    sf.write(good, _tone(0.5, 16000), 16000)
    (tmp_path / "text.wav").write_text("not audio")
    for path in (good, good.encode(), np.str_(good)):
        assert A.load_audio(path).shape == (8000,)
    for path, problem in ((str(tmp_path / "missing.wav"), "file not found"),
                          (str(tmp_path / "text.wav"), "cannot decode audio")):
        for given in (path, path.encode(), tf.constant(path)):
            with pytest.raises(mmtl_tf.DataError, match=f"^{path}: {problem}"):
                A.load_audio(given)
    with pytest.raises(mmtl_tf.DataError, match="all silent"):
        A.trim_silence(np.zeros(16000, "float32"))
