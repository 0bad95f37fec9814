"""Audio loading and the source document's audio preprocessing steps.

Section 3.1.2 of the source document preprocesses audio before learning a shared
audio-text space: *cropping* (trim the silence, then cut or pad to a fixed
length), *compression* of the dynamic range (mu-law, log) and *filtering*
(pre-emphasis, band-pass). Each step is a named function here that runs inside
`tf.data` (and, where it is made of TensorFlow ops, inside a model or an exported
SavedModel):

| step | function | runs as |
|---|---|---|
| load (WAV/FLAC/OGG, resample, mono) | `load_audio` | `tf.numpy_function` (soundfile + librosa) |
| trim silence | `trim_silence` | `tf.numpy_function` (`librosa.effects.trim`) |
| crop / pad | `crop_or_pad` | TensorFlow ops |
| trim + centre crop/pad of a batch (serving) | `trim_and_crop_batch` | TensorFlow ops |
| mu-law / log compression | `mu_law_compress`, `mu_law_expand`, `log_compress` | TensorFlow ops |
| pre-emphasis, band-pass | `pre_emphasis`, `band_pass` | TensorFlow ops |

Every function takes a 1-D waveform (float32 samples in [-1, 1]); the
TensorFlow-op ones also take a batch (..., samples). Outputs carry their static
shapes (`[None]` for variable lengths, `[length]` after `crop_or_pad`), so a
`Dataset.map` built from them batches without `ensure_shape` calls.

Documented conversions (not errors): multi-channel audio is downmixed to mono
by averaging the channels; audio at another sample rate is resampled to the
target rate with librosa (`soxr_hq`). Bad input raises `mmtl_tf.DataError`
naming the file and the problem: missing or empty file, a file libsndfile cannot
decode (corrupt, unsupported), a truncated WAV file, no samples, NaN or
infinite samples, a clip shorter than one FFT window, an all-silent clip.
"""

import os

import numpy as np
import tensorflow as tf

from mmtl_tf.errors import DataError, check_count

DEFAULT_SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus")


# --------------------------------------------------------------------------
# NumPy level: what tf.numpy_function runs (usable on their own as well).


def _as_path(path):
    if isinstance(path, np.ndarray):  # a 0-d array from tf.numpy_function
        path = path.item()
    return os.fsdecode(path)


def read_audio(path, sample_rate=DEFAULT_SAMPLE_RATE, min_samples=0):
    """Reads an audio file into float32 mono samples at `sample_rate`.

    Args:
        path: str. A WAV, FLAC, Ogg (Vorbis/Opus) or MP3 file; anything
            libsndfile reads.
        sample_rate: int >= 1 or None. Target rate; other rates are resampled
            (librosa, `soxr_hq`). None keeps the file's rate. A float, bool or
            value < 1 raises a `ValueError` naming `sample_rate` before the
            file is read.
        min_samples: int. Fewer samples (after resampling) is an error: use the
            FFT window length of the front end, so that every clip fills at
            least one analysis frame.

    Returns:
        (float32 ndarray (samples,), int sample rate).

    Raises:
        ValueError: a bad `sample_rate` (see above).
        mmtl_tf.DataError: naming the file and the problem (missing, empty,
            undecodable, a WAV, Ogg or MP3 file cut short, no samples, NaN/inf
            samples, channels that cancel in the mono mix, shorter than
            `min_samples`).

    Example:
        >>> import mmtl_tf
        >>> recs = mmtl_tf.data.load_audio_text_records("default", "validation")
        >>> y, rate = mmtl_tf.data.read_audio(recs.paths[0])
        >>> rate, y.dtype.name
        (16000, 'float32')
    """
    import soundfile as sf

    if sample_rate is not None:
        # 0 used to keep the file's rate (falsy) and -1 failed in soxr.
        sample_rate = check_count("sample_rate", sample_rate)
    path = _as_path(path)
    if not os.path.exists(path):
        from mmtl_tf.data.sources import missing_file_problem

        raise DataError(f"{path}: {missing_file_problem(path)}.")
    if os.path.isdir(path):
        raise DataError(f"{path}: a folder, not an audio file.")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (0 bytes).")
    try:
        with sf.SoundFile(path) as f:
            declared = f.frames
            y = f.read(dtype="float32", always_2d=True)
            rate, container = f.samplerate, f.format
    except Exception as e:  # libsndfile reports corrupt/unsupported files
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "File does not exist or is not a regular file" in message:
            # What libsndfile says of bytes it recognises as no format (the
            # file is there: checked above).
            message = "not an audio format libsndfile reads (WAV, FLAC, Ogg, MP3), or corrupt"
        raise DataError(f"{path}: cannot decode audio ({message}).") from e
    truncated = _wav_truncation(path)
    if truncated:
        raise DataError(f"{path}: truncated WAV file ({truncated}).")
    truncated = _ogg_truncation(path) if container == "OGG" else None
    if truncated:
        raise DataError(f"{path}: truncated Ogg file ({truncated}).")
    # An MP3 declares its length only in a Xing/Info/VBRI header; without one
    # libsndfile estimates it from the file size and the first frame's
    # bitrate, which a complete VBR file need not reach.
    declares = container not in ("MP3", "MPEG") or _mp3_declares_length(path)
    if declares and 0 < declared < 2**62 and len(y) < declared - max(4608, declared // 100):
        # E.g. an MP3 whose Xing header counts more frames than the file
        # holds (a download cut short): the decoder stops early, silently.
        raise DataError(f"{path}: truncated or corrupt audio (the header declares "
                        f"{declared:,} samples, {len(y):,} could be decoded).")
    if y.shape[0] == 0:
        raise DataError(f"{path}: the file holds no audio samples.")
    bad = int(np.count_nonzero(~np.isfinite(y)))
    if bad:
        raise DataError(f"{path}: {bad} NaN or infinite sample(s).")
    if y.shape[1] > 1:
        channels, channels_peak = y.shape[1], float(np.max(np.abs(y)))
        y = y.mean(axis=1)
        mix_peak = float(np.max(np.abs(y)))
        # Channels that are audible (above trimming's -70 dBFS floor) but
        # cancel in the mono mix (60 dB or more quieter): one is the other
        # phase-inverted. It was reported as "all silent", which the file
        # is not.
        if channels_peak > 10 ** (-70 / 20) and mix_peak < 1e-3 * channels_peak:
            raise DataError(
                f"{path}: its {channels} channels cancel out when averaged to mono (loudest "
                f"sample {channels_peak:.3g} in a channel, {mix_peak:.2g} in the mix): one "
                "channel is the other phase-inverted; keep one channel, or fix the file.")
    else:
        y = y[:, 0]
    if sample_rate and rate != sample_rate:
        import librosa

        y = librosa.resample(y, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
        rate = sample_rate
    if len(y) < min_samples:
        raise DataError(
            f"{path}: clip shorter than one FFT window ({len(y)} samples at "
            f"{rate} Hz < {min_samples}).")
    return np.ascontiguousarray(y, dtype=np.float32), int(rate)


def _ogg_truncation(path):
    """Why an Ogg (Vorbis, Opus) file is cut short, or None.

    libsndfile decodes a truncated Ogg file as the samples that are there. A
    complete one ends with a whole page that carries the end-of-stream flag:
    the last page is found from the end of the file (a page is at most
    65,307 bytes) and its length read from its segment table.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - 65536 - 27)
            f.seek(start)
            tail = f.read()
    except OSError:
        return None
    at = tail.rfind(b"OggS")
    if at < 0 or len(tail) - at < 27:
        return "its last page is cut short"
    segments = tail[at + 27:at + 27 + tail[at + 26]]
    if len(segments) < tail[at + 26] or at + 27 + len(segments) + sum(segments) > len(tail):
        return "its last page is cut short"
    if not tail[at + 5] & 0x04:
        return "it ends without the end-of-stream page"
    return None


def _mp3_declares_length(path):
    """Whether an MP3 file's first frame holds a Xing, Info or VBRI header
    (the only place an MP3 states its length); an ID3v2 tag is skipped."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
            offset = 0
            if head[:3] == b"ID3" and len(head) == 10:
                size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
                offset = 10 + size + (10 if head[5] & 0x10 else 0)
            f.seek(offset)
            frame = f.read(4096)
    except OSError:
        return False
    sync = next((i for i in range(len(frame) - 1)
                 if frame[i] == 0xFF and frame[i + 1] & 0xE0 == 0xE0), None)
    if sync is None:
        return False
    first = frame[sync:sync + 200]
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


def _wav_truncation(path):
    """Why a WAV file is cut short, or None.

    libsndfile reads a truncated WAV (and Ogg: `_ogg_truncation`; FLAC fails
    to decode) as the samples that are there, so a download or copy that stopped half-way would
    pass as a shorter clip. The `data` chunk's size in the header says how many
    bytes there should be. A size of 0 or 0xFFFFFFFF (written by streaming
    recorders that never went back to fill it in) tells nothing and passes, as
    do files that are not RIFF/WAVE (RF64, W64, other formats).
    """
    import struct

    try:
        with open(path, "rb") as f:
            header = f.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"data":
                    present = size - f.tell()
                    if length in (0, 0xFFFFFFFF) or present >= length:
                        return None
                    return (f"the header declares {length:,} bytes of samples, the file "
                            f"holds {present:,}")
                f.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return None


def trim_silence_array(y, top_db=40.0, frame_length=1024, hop_length=256,
                       floor_db=-70.0, min_samples=0, name="waveform"):
    """NumPy `trim_silence`: leading and trailing silence cut by librosa.

    A frame is silent when its RMS is more than `top_db` below the loudest
    frame (`librosa.effects.trim`). librosa measures relative to the loudest
    frame, so a clip of zeros or faint noise would be kept whole; a clip whose
    loudest frame is below `floor_db` dBFS is therefore all silent.

    Args:
        y: float ndarray (samples,).
        top_db: float. Threshold below the loudest frame, in dB.
        frame_length: int. RMS frame length in samples.
        hop_length: int. RMS hop in samples.
        floor_db: float. Loudest-frame RMS (dB re full scale) below which the
            whole clip counts as silence.
        min_samples: int. Fewer samples left after trimming is an error.
        name: str. The file or row, for error messages.

    Returns:
        float32 ndarray (trimmed samples,).
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        raise DataError(f"{name}: all silent (no samples).")
    # Frames of frame_length even for shorter clips (centred frames are
    # zero-padded), as librosa.effects.trim and the exported graph's
    # trim_and_crop_batch do: a frame of y.size kept other samples of a
    # 512-1023-sample clip than the graph (900: 644 here, 900 there).
    frame = int(frame_length)
    rms = librosa.feature.rms(y=y, frame_length=frame, hop_length=hop_length,
                              center=True)
    loudest = float(np.max(rms)) if rms.size else 0.0
    loudest_db = 20 * np.log10(loudest) if loudest > 0 else -np.inf
    if loudest_db < floor_db:
        raise DataError(
            f"{name}: all silent (loudest frame {loudest_db:.1f} dBFS < {floor_db:g} "
            "dBFS); trimming the silence leaves nothing.")
    trimmed, _ = librosa.effects.trim(y, top_db=top_db, frame_length=frame,
                                      hop_length=hop_length)
    if trimmed.size == 0:
        raise DataError(f"{name}: all silent; trimming the silence leaves nothing.")
    if trimmed.size < min_samples:
        raise DataError(
            f"{name}: after trimming the silence only {trimmed.size} samples remain, "
            f"shorter than one FFT window ({min_samples}).")
    return np.ascontiguousarray(trimmed, dtype=np.float32)


def load_and_trim(path, sample_rate=DEFAULT_SAMPLE_RATE, trim=True, top_db=40.0,
                  min_samples=0, floor_db=-70.0):
    """`read_audio`, then `trim_silence_array` (if `trim`): what the dataset
    pipeline runs per file.

    Args:
        path: str. Audio file.
        sample_rate: int >= 1 or None. Target rate (see `read_audio`).
        trim: bool. Cut leading and trailing silence.
        top_db: float. Silence threshold below the loudest frame.
        min_samples: int. Shortest acceptable clip, before and after trimming.
        floor_db: float. All-silent threshold (dBFS of the loudest frame).
            Without `trim`, only a clip whose samples are all zero is an error.

    Returns:
        float32 ndarray (samples,).

    Example:
        >>> import mmtl_tf
        >>> from mmtl_tf.data.audio import load_and_trim
        >>> recs = mmtl_tf.data.load_audio_text_records("default", "validation")
        >>> load_and_trim(recs.paths[0]).ndim
        1
    """
    y, _ = read_audio(path, sample_rate, min_samples=min_samples)
    if trim:
        y = trim_silence_array(y, top_db=top_db, min_samples=min_samples,
                               floor_db=floor_db, name=_as_path(path))
    elif not np.any(y):
        raise DataError(f"{_as_path(path)}: all silent (every sample is zero).")
    return y


# --------------------------------------------------------------------------
# TensorFlow level: usable in Dataset.map; the op-based ones also in models.


def numpy_audio_op(fn, value, name):
    """`fn(value)` (NumPy, float32 samples out) as a `tf.numpy_function` whose
    `DataError` becomes the op's `InvalidArgumentError` ("assertion failed:
    [FILE: problem]", bytes escaped) without TensorFlow logging it; called
    eagerly, `fn` runs directly and its `DataError` is raised as it is. A Python exception
    raised inside `tf.numpy_function` is logged on stderr with its whole
    traceback, once per failing element: a folder of 12 bad clips printed 14
    tracebacks (347 lines) while the dataset checked its files, although
    the `DataError` that followed named them all. Other exceptions (bugs)
    still propagate as before.

    Args:
        fn: callable. NumPy value → float32 ndarray (samples,); raises
            `DataError` for bad input.
        value: tensor. What `fn` takes.
        name: str. The op's name.

    Returns:
        float32 tensor [None].
    """
    if tf.executing_eagerly():
        # Called directly: the DataError itself, as before (TensorFlow's
        # Assert would give an InvalidArgumentError with escaped text). Also
        # for a plain str or NumPy value: load_audio("a.wav") of a bad file
        # raised the InvalidArgumentError.
        value = tf.convert_to_tensor(value)
        return tf.constant(np.asarray(fn(value.numpy()), np.float32))

    def call(v):
        try:
            return np.asarray(fn(v), np.float32), b""
        except DataError as e:
            return np.zeros(0, np.float32), str(e).encode("utf-8", "replace")

    y, problem = tf.numpy_function(call, [value], [tf.float32, tf.string], stateful=False,
                                   name=name)
    problem = tf.ensure_shape(problem, [])
    ok = tf.debugging.Assert(tf.equal(tf.strings.length(problem), 0), [problem])
    with tf.control_dependencies([ok]):
        return tf.ensure_shape(tf.identity(y), [None])


def load_audio(path, sample_rate=DEFAULT_SAMPLE_RATE, min_samples=0):
    """Reads an audio file inside a `tf.data` pipeline (`tf.numpy_function`).

    Args:
        path: scalar tf.string. File path.
        sample_rate: int >= 1 or None. Target sample rate (others are
            resampled; multi-channel audio is averaged to mono; None keeps the
            file's rate). A float, bool or value < 1 raises a `ValueError`
            naming `sample_rate` here, not when the pipeline runs.
        min_samples: int. See `read_audio`.

    Returns:
        float32 tensor of shape [None] (samples).

    Example:
        >>> import tensorflow as tf, mmtl_tf
        >>> recs = mmtl_tf.data.load_audio_text_records("default", "validation")
        >>> mmtl_tf.data.load_audio(tf.constant(recs.paths[0])).shape.rank
        1
    """
    if sample_rate is not None:
        sample_rate = check_count("sample_rate", sample_rate)

    def fn(p):
        return read_audio(p, sample_rate, min_samples=min_samples)[0]

    return numpy_audio_op(fn, path, "load_audio")


def trim_silence(waveform, top_db=40.0, frame_length=1024, hop_length=256,
                 floor_db=-70.0, min_samples=0):
    """Cuts leading and trailing silence (`librosa.effects.trim`, in tf.data).

    Args:
        waveform: float32 tensor [samples].
        top_db: float. A frame is silent when its RMS is `top_db` below the
            loudest frame.
        frame_length: int. RMS frame in samples.
        hop_length: int. RMS hop in samples.
        floor_db: float. A clip whose loudest frame is quieter than this (dBFS)
            is all silent: `mmtl_tf.DataError`.
        min_samples: int. Fewer samples left is a `DataError`.

    Returns:
        float32 tensor [None]. Called eagerly, bad input raises the
        `DataError`; inside `Dataset.map` (a graph) it fails the element
        with an `InvalidArgumentError` that carries the same text
        (`numpy_audio_op`), as `load_audio` does.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> y = np.concatenate([np.zeros(8000), np.sin(np.arange(8000) / 5), np.zeros(8000)])
        >>> int(mmtl_tf.data.trim_silence(y.astype("float32")).shape[0]) < 12000
        True

    References:
        librosa.effects.trim (McFee et al., librosa, SciPy 2015).
    """
    def fn(y):
        return trim_silence_array(y, top_db, frame_length, hop_length, floor_db,
                                  min_samples)

    return numpy_audio_op(fn, tf.convert_to_tensor(waveform, tf.float32), "trim_silence")


CROP_MODES = ("center", "start", "random")


def crop_or_pad(waveform, length, mode="center", seed=None):
    """Cuts a waveform to `length` samples or pads it with zeros (TF ops).

    Args:
        waveform: float32 tensor [samples].
        length: int. Output samples.
        mode: str. Where to cut or pad: `"center"` (equal amounts on both sides),
            `"start"` (keep the beginning, pad at the end) or `"random"` (a
            random window when too long, a random offset when too short;
            needs `seed`).
        seed: int tensor of shape (2,). Stateless seed for `"random"`.

    Returns:
        float32 tensor [length].

    Example:
        >>> import mmtl_tf
        >>> mmtl_tf.data.crop_or_pad([1.0, 2.0, 3.0], 5).numpy().tolist()
        [0.0, 1.0, 2.0, 3.0, 0.0]
    """
    if mode not in CROP_MODES:
        raise ValueError(f"mode={mode!r} is not allowed; use one of "
                         f"{', '.join(map(repr, CROP_MODES))}.")
    if int(length) < 1:
        raise ValueError(f"length must be >= 1, got {length}.")
    if mode == "random" and seed is None:
        raise ValueError("crop_or_pad(mode='random') needs a seed.")
    length = int(length)
    y = tf.convert_to_tensor(waveform, tf.float32)
    n = tf.shape(y)[0]
    excess = tf.maximum(n - length, 0)
    missing = tf.maximum(length - n, 0)
    if mode == "center":
        start, before = excess // 2, missing // 2
    elif mode == "start":
        start, before = tf.constant(0), tf.constant(0)
    else:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        start = tf.random.stateless_uniform([], seeds[0], 0, excess + 1, dtype=tf.int32)
        before = tf.random.stateless_uniform([], seeds[1], 0, missing + 1, dtype=tf.int32)
    y = y[start:start + tf.minimum(n, length)]
    y = tf.pad(y, [[before, length - tf.shape(y)[0] - before]])
    return tf.ensure_shape(y, [length])


def trim_and_crop_batch(waveforms, length, trim=True, top_db=40.0, frame_length=1024,
                        hop_length=256, lengths=None):
    """Trims silence and centre-crops/pads a zero-padded batch, in TF ops only.

    The graph counterpart of `trim_silence` (librosa) followed by
    `crop_or_pad(..., mode="center")`, for inputs that must be processed
    inside a model or SavedModel (no `tf.numpy_function`): the same RMS frames
    (centred, zero-padded), the same threshold (`top_db` below the loudest
    frame of the clip) and the same start/end rule as
    `librosa.effects.trim`, then the same centre crop or symmetric zero-pad.
    Clips of different lengths are zero-padded at the end to one batch;
    give their `lengths`, or with `trim` each row is taken to end at its last
    non-zero sample (then a clip that itself ends in exact digital zeros is
    cut a little earlier than librosa would cut it, which can shift the
    centre crop by up to `frame_length` samples; recorded audio rarely ends
    in exact zeros). Without `trim` and `lengths` every row is used whole. Unlike
    the data pipeline, nothing is rejected: a row of zeros stays zeros, and
    there is no absolute silence floor (`floor_db` of `trim_silence`).

    Args:
        waveforms: float32 tensor (batch, samples).
        length: int. Output samples per row.
        trim: bool. Cut leading/trailing silence first.
        top_db: float. Silence threshold below the loudest frame (dB).
        frame_length: int. RMS frame in samples.
        hop_length: int. RMS hop in samples.
        lengths: int tensor (batch,) or None. Valid samples of each row.

    Returns:
        float32 tensor (batch, length).

    Example:
        >>> import numpy as np, mmtl_tf
        >>> y = np.concatenate([np.zeros(8000), np.sin(np.arange(8000) / 5), np.zeros(8000)])
        >>> out = mmtl_tf.data.trim_and_crop_batch(y[None].astype("float32"), 12000)
        >>> tuple(out.shape)
        (1, 12000)

    References:
        librosa.effects.trim (McFee et al., librosa, SciPy 2015).
    """
    length = int(length)
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}.")
    y = tf.convert_to_tensor(waveforms, tf.float32)
    if y.shape.rank != 2:
        raise ValueError(f"waveforms must have shape (batch, samples); got {y.shape}.")
    total = tf.shape(y)[1]
    if lengths is not None:
        ends = tf.minimum(tf.cast(lengths, tf.int32), total)
        y = tf.where(tf.range(total)[None] < ends[:, None], y, 0.0)
    elif trim:
        # Each row ends after its last non-zero sample (the rest is batch padding).
        positions = tf.range(total)
        ends = tf.reduce_max(tf.where(tf.not_equal(y, 0.0), positions[None] + 1, 0), axis=1)
    else:
        ends = tf.fill(tf.shape(y)[:1], total)
    starts = tf.zeros_like(ends)
    if trim:
        half = frame_length // 2
        padded = tf.pad(y, [[0, 0], [half, half]])
        frames = tf.signal.frame(padded, frame_length, hop_length, pad_end=False)
        power = tf.reduce_mean(tf.square(frames), axis=-1)          # (batch, frames)
        # librosa frames a clip of n samples into 1 + n // hop frames.
        frame_ids = tf.range(tf.shape(power)[1])
        valid = frame_ids[None] <= (ends // hop_length)[:, None]
        power = tf.where(valid, power, 0.0)
        amin = tf.constant(1e-10, tf.float32)
        db = 10.0 * (tf.math.log(tf.maximum(power, amin))
                     - tf.math.log(tf.maximum(tf.reduce_max(power, axis=1,
                                                             keepdims=True), amin)))
        db = db / tf.math.log(tf.constant(10.0, tf.float32))
        loud = tf.logical_and(valid, db > -float(top_db))
        any_loud = tf.reduce_any(loud, axis=1)
        big = tf.shape(power)[1]
        first = tf.reduce_min(tf.where(loud, frame_ids[None], big), axis=1)
        last = tf.reduce_max(tf.where(loud, frame_ids[None], -1), axis=1)
        starts = tf.where(any_loud, first * hop_length, 0)
        ends = tf.where(any_loud, tf.minimum(ends, (last + 1) * hop_length), 0)
    kept = ends - starts
    excess = tf.maximum(kept - length, 0)
    missing = tf.maximum(length - kept, 0)
    source_start = starts + excess // 2
    before = missing // 2
    out_positions = tf.range(length)[None]                            # (1, length)
    offset = out_positions - before[:, None]
    inside = tf.logical_and(offset >= 0, offset < tf.minimum(kept, length)[:, None])
    index = tf.clip_by_value(source_start[:, None] + offset, 0, tf.maximum(total - 1, 0))
    gathered = tf.gather(y, index, batch_dims=1)
    out = tf.where(inside, gathered, 0.0)
    return tf.ensure_shape(out, [y.shape[0], length])


def silent_or_short_rows(waveforms, min_samples=0, floor_db=-70.0, frame_length=1024,
                         hop_length=256, lengths=None):
    """Which rows of a zero-padded batch the data pipeline would refuse, in
    TF ops (for exported models): (silent, short), bool (batch,) each.

    A row is silent when its loudest RMS frame (centred frames of
    `frame_length`, zero-padded, as `trim_silence_array` measures them) is
    quieter than `floor_db` dBFS (None: only a row of zeros is silent), and
    short when it has fewer than `min_samples` samples up to its last
    non-zero one (the rest is batch padding), or, with `lengths` (int
    (batch,), each row's valid samples), fewer than `min_samples` of them.
    Training also refuses a clip that trimming leaves shorter than that;
    this tests the clip as sent.

    Args:
        waveforms: float32 tensor (batch, samples).
        min_samples: int. The shortest clip (the front end's FFT length).
        floor_db: float or None. The all-silent threshold (dBFS).
        frame_length: int. RMS frame in samples.
        hop_length: int. RMS hop in samples.
    """
    y = tf.convert_to_tensor(waveforms, tf.float32)
    positions = tf.range(tf.shape(y)[1])[None]
    if lengths is not None:  # the samples past a row's length are not its audio
        ends = tf.minimum(tf.cast(lengths, tf.int32), tf.shape(y)[1])
        y = tf.where(positions < ends[:, None], y, 0.0)
    nonzero = tf.not_equal(y, 0.0)
    if lengths is None:  # each row ends after its last non-zero sample
        ends = tf.reduce_max(tf.where(nonzero, positions + 1, 0), axis=1)
    short = ends < int(min_samples)
    if floor_db is None:
        return tf.logical_not(tf.reduce_any(nonzero, axis=1)), short
    half = int(frame_length) // 2
    frames = tf.signal.frame(tf.pad(y, [[0, 0], [half, half]]), int(frame_length),
                             int(hop_length), pad_end=False)
    loudest = tf.reduce_max(tf.reduce_mean(tf.square(frames), axis=-1), axis=1)
    return loudest < 10.0 ** (float(floor_db) / 10.0), short


def mu_law_compress(waveform, mu=255, quantize=False):
    """Mu-law dynamic-range compression: sign(x)·ln(1 + mu|x|) / ln(1 + mu).

    Args:
        waveform: float tensor, samples in [-1, 1] (clipped to it).
        mu: int. Compression parameter (255: 8-bit telephony, WaveNet).
        quantize: bool. Also round to `mu + 1` levels (the output stays a float
            in [-1, 1]).

    Returns:
        float32 tensor, same shape, in [-1, 1].

    Example:
        >>> import mmtl_tf
        >>> round(float(mmtl_tf.data.mu_law_compress(0.01)), 3)
        0.228

    References:
        ITU-T G.711 (1988); van den Oord et al., "WaveNet" (2016).
    """
    x = tf.clip_by_value(tf.convert_to_tensor(waveform, tf.float32), -1.0, 1.0)
    mu = float(mu)
    y = tf.sign(x) * tf.math.log1p(mu * tf.abs(x)) / np.log1p(mu)
    if quantize:
        y = tf.round((y + 1.0) / 2.0 * mu) / mu * 2.0 - 1.0
    return y


def mu_law_expand(compressed, mu=255):
    """Inverse of `mu_law_compress`: sign(y)·((1 + mu)^|y| − 1) / mu.

    Args:
        compressed: float tensor in [-1, 1].
        mu: int. The same `mu` as for compression.

    Returns:
        float32 tensor, same shape (exact inverse unless quantised).

    Example:
        >>> import mmtl_tf
        >>> y = mmtl_tf.data.mu_law_compress(0.25)
        >>> round(float(mmtl_tf.data.mu_law_expand(y)), 4)
        0.25

    References:
        ITU-T G.711 (1988).
    """
    y = tf.convert_to_tensor(compressed, tf.float32)
    mu = float(mu)
    return tf.sign(y) * (tf.pow(1.0 + mu, tf.abs(y)) - 1.0) / mu


def log_compress(x, scale=1000.0):
    """Log dynamic-range compression: sign(x)·ln(1 + scale·|x|).

    Unnormalised (unlike `mu_law_compress`): meant for magnitudes such as
    spectrogram or envelope values (non-negative in, non-negative out); on a
    waveform it keeps the sign.

    Args:
        x: float tensor.
        scale: float. Larger values compress more.

    Returns:
        float32 tensor, same shape.

    Example:
        >>> import mmtl_tf
        >>> round(float(mmtl_tf.data.log_compress(1.0, scale=1.0)), 4)
        0.6931
    """
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.sign(x) * tf.math.log1p(scale * tf.abs(x))


def pre_emphasis(waveform, coefficient=0.97):
    """First-order high-pass filter y[t] = x[t] - coefficient·x[t-1] (y[0] = x[0]).

    Args:
        waveform: float tensor (..., samples).
        coefficient: float. 0.97 is the usual speech value.

    Returns:
        float32 tensor, same shape.

    Example:
        >>> import mmtl_tf
        >>> mmtl_tf.data.pre_emphasis([1.0, 1.0, 1.0], 0.5).numpy().tolist()
        [1.0, 0.5, 0.5]
    """
    if coefficient is None:
        raise ValueError("pre_emphasis needs a coefficient between 0 and 1 (e.g. 0.97), got "
                         "None.")
    coefficient = check_pre_emphasis(coefficient)
    x = tf.convert_to_tensor(waveform, tf.float32)
    return tf.concat([x[..., :1], x[..., 1:] - coefficient * x[..., :-1]], axis=-1)


def check_band(band, sample_rate):
    """`sample_rate` as an int, or a `ValueError` unless `band` = (low_hz,
    high_hz) has 0 <= low_hz < high_hz <= sample_rate / 2 (the dataset
    builders check it up front: inside their `Dataset.map` it came wrapped
    in autograph's "in user code:" frames)."""
    # sample_rate=0 said "need 0 <= low_hz < high_hz <= sample_rate / 2 = 0".
    sample_rate = check_count("sample_rate", sample_rate)
    nyquist = sample_rate / 2.0
    low_hz, high_hz = band
    if not 0 <= low_hz < high_hz <= nyquist:
        raise ValueError(
            f"need 0 <= low_hz < high_hz <= sample_rate / 2 = {nyquist:g}; got "
            f"low_hz={low_hz}, high_hz={high_hz}.")
    return sample_rate


def check_pre_emphasis(coefficient):
    """`coefficient` as a float when its value is known now (a Python or
    NumPy number), or a `ValueError` unless it is within [0, 1] (2.0 was
    accepted: it made the filter amplify the previous sample's echo). None
    stays None (no pre-emphasis); a tensor (e.g. a random coefficient drawn
    in `tf.data`) is returned as it is, unchecked."""
    import numbers

    if coefficient is None or tf.is_tensor(coefficient):
        return coefficient
    value = np.asarray(coefficient)
    if value.ndim or isinstance(coefficient, bool) or not (
            np.issubdtype(value.dtype, np.number) and isinstance(value.item(), numbers.Real)) \
            or not 0 <= value.item() <= 1:
        raise ValueError(f"pre_emphasis must be None or a coefficient between 0 and 1 (0.97 "
                         f"is the usual speech value), got {coefficient!r}.")
    return float(value)


def check_top_db(top_db):
    """`top_db` as a float, or a `ValueError` unless it is a positive number
    (a negative one made every clip "all silent": a bad file each)."""
    import numbers

    if isinstance(top_db, bool) or not isinstance(top_db, numbers.Real) or not top_db > 0:
        raise ValueError(f"top_db must be a positive number of decibels (silence is that "
                         f"far below the loudest frame), got {top_db!r}.")
    return float(top_db)


def band_pass(waveform, sample_rate, low_hz=80.0, high_hz=7600.0, transition_hz=50.0):
    """Zero-phase band-pass filter in the frequency domain (TF ops).

    The spectrum of the whole clip (`rfft`) is multiplied by a gain that is 1
    inside [low_hz, high_hz], 0 outside, with raised-cosine transitions
    `transition_hz` wide centred on the edges (a brick wall would ring): the
    gain is 0.5 at `low_hz` and `high_hz` themselves, 1 from
    `transition_hz / 2` inside them and 0 from `transition_hz / 2` outside
    (`low_hz=0` and `high_hz=sample_rate / 2` have no transition: the gain
    stays 1 there).
    Then the spectrum is transformed back.

    Args:
        waveform: float tensor (..., samples).
        sample_rate: int >= 1. Samples per second (a float, bool or value < 1
            raises a `ValueError` naming `sample_rate`).
        low_hz: float. Lower edge (0 = low-pass).
        high_hz: float. Upper edge (<= sample_rate / 2).
        transition_hz: float. Width of each cosine transition.

    Returns:
        float32 tensor, same shape.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> t = np.arange(16000) / 16000
        >>> y = np.sin(2 * np.pi * 50 * t) + np.sin(2 * np.pi * 1000 * t)
        >>> out = mmtl_tf.data.band_pass(y.astype("float32"), 16000, 300, 3000)
        >>> round(float(np.std(out)), 2)  # the 50 Hz tone is gone
        0.71
    """
    sample_rate = check_band((low_hz, high_hz), sample_rate)
    nyquist = sample_rate / 2.0
    x = tf.convert_to_tensor(waveform, tf.float32)
    n = tf.shape(x)[-1]
    spectrum = tf.signal.rfft(x)
    freqs = tf.cast(tf.range(n // 2 + 1), tf.float32) * (sample_rate / tf.cast(n, tf.float32))

    def ramp(edge, rising):
        # 0 → 1 over [edge - transition/2, edge + transition/2] (rising).
        u = tf.clip_by_value((freqs - edge) / transition_hz + 0.5, 0.0, 1.0)
        g = 0.5 - 0.5 * tf.cos(np.pi * u)
        return g if rising else 1.0 - g

    gain = tf.ones_like(freqs)
    if low_hz > 0:
        gain *= ramp(low_hz, True)
    if high_hz < nyquist:
        gain *= ramp(high_hz, False)
    y = tf.signal.irfft(spectrum * tf.cast(gain, tf.complex64), fft_length=[n])
    return tf.reshape(y, tf.shape(x))


COMPRESSIONS = (None, "mu_law", "log")


def preprocess_waveform(waveform, length, sample_rate=DEFAULT_SAMPLE_RATE,
                        crop="center", seed=None, pre_emphasis_coefficient=None,
                        band=None, compression=None):
    """The document's steps after loading and trimming, in order: filtering
    (pre-emphasis, band-pass), crop/pad to `length`, compression.

    Args:
        waveform: float32 tensor [samples] (trimmed already, if wanted).
        length: int. Output samples.
        sample_rate: int. For `band`.
        crop: str. `crop_or_pad` mode.
        seed: int tensor (2,). For `crop="random"`.
        pre_emphasis_coefficient: float or None.
        band: (low_hz, high_hz) or None. `band_pass` edges.
        compression: None, `"mu_law"` or `"log"`.

    Returns:
        float32 tensor [length].
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression={compression!r} is not allowed; use one of "
                         f"{', '.join(map(repr, COMPRESSIONS))}.")
    y = tf.convert_to_tensor(waveform, tf.float32)
    if pre_emphasis_coefficient:
        y = pre_emphasis(y, pre_emphasis_coefficient)
    if band is not None:
        y = band_pass(y, sample_rate, float(band[0]), float(band[1]))
    y = crop_or_pad(y, length, crop, seed)
    if compression == "mu_law":
        y = mu_law_compress(y)
    elif compression == "log":
        y = log_compress(y)
    return y
