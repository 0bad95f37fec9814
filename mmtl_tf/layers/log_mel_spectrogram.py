"""`LogMelSpectrogram`: float32 waveforms → log-mel spectrograms, in the graph."""

import numbers

import keras
import numpy as np
from keras import ops

MEL_SCALES = ("slaney", "htk")
PAD_MODES = ("constant", "reflect")
OUTPUTS = ("db", "power")


def hz_to_mel(frequencies, mel_scale="slaney"):
    """Hz → mel. Slaney: linear below 1 kHz (3 mel / 200 Hz), logarithmic above;
    HTK: 2595·log10(1 + f / 700)."""
    f = np.asarray(frequencies, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz,
                    min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep,
                    f / f_sp)


def mel_to_hz(mels, mel_scale="slaney"):
    """Inverse of `hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)),
                    f_sp * m)


def mel_filterbank(sample_rate, n_fft, n_mels=64, fmin=0.0, fmax=None,
                   mel_scale="slaney", norm="slaney"):
    """Triangular mel filters as a (n_fft // 2 + 1, n_mels) float32 matrix.

    Filter i rises from mel point i to i + 1 and falls to i + 2, with
    `n_mels + 2` points evenly spaced on the mel scale between `fmin` and
    `fmax`. `norm="slaney"` divides each filter by half its width in Hz (equal
    area); None leaves peaks at 1.

    Args:
        sample_rate: int.
        n_fft: int. FFT length.
        n_mels: int.
        fmin: float. Lowest edge in Hz.
        fmax: float or None. Highest edge (None: sample_rate / 2).
        mel_scale: str. `"slaney"` or `"htk"`.
        norm: str or None. `"slaney"` or None.

    Returns:
        float32 ndarray (n_fft // 2 + 1, n_mels).

    References:
        Slaney, "Auditory Toolbox" (1998); Young et al., "The HTK Book".
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    # Bin k is at k * rate / n_fft (as np.fft.rfftfreq): for an odd n_fft the
    # last bin is below rate / 2 (a linspace to rate / 2 shifted every bin).
    fft_freqs = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(fmin, mel_scale),
                                       hz_to_mel(fmax, mel_scale), n_mels + 2), mel_scale)
    widths = np.diff(mel_points)
    offsets = mel_points[:, None] - fft_freqs[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.T.astype(np.float32)


def periodic_hann(length):
    """float32 (length,): 0.5 - 0.5 cos(2 pi n / length), n = 0 .. length - 1.

    The periodic Hann window of librosa / scipy (`get_window("hann", length)`)
    for every length. `tf.signal.hann_window(length, periodic=True)` (what
    `keras.ops.stft(window="hann")` uses) differs from it for odd lengths
    (it divides by length - 1 there: the symmetric window), which put the
    log-mels up to 0.2 dB off librosa's for an odd `win_length`."""
    n = np.arange(int(length), dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / int(length))).astype(np.float32)


def check_float_waveforms(waveforms, who):
    """A `TypeError` if `waveforms` has an integer (or bool) dtype: `who`
    takes float samples in [-1, 1]. Only the static dtype is read."""
    dtype = getattr(waveforms, "dtype", None)
    if dtype is None:
        return
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bool" or "int" in dtype:
        raise TypeError(
            f"{who} expected a float tensor of samples in [-1, 1] (float32), got dtype "
            f"{dtype}. Scale integer PCM first: int16 samples / 32768 (int32: / 2**31), "
            f"e.g. waveform.astype('float32') / 32768.")


@keras.saving.register_keras_serializable(package="mmtl_tf")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveforms (batch, samples) → log-mel spectrograms (batch, frames, n_mels).

    Inputs are mono: (samples,) or (batch, samples), at least `min_samples`
    long when the length is known (1 with the default centre zero padding).
    Other ranks, e.g. channels-last stereo (batch, samples, 2), raise a
    ValueError: average the channels first. Samples are floats in [-1, 1]:
    integer PCM raises a TypeError (divide int16 by 32768 first; cast to float
    unscaled, it would shift every value by about 90 dB).

    Built from `keras.ops` (STFT, matmul, log), so the same layer runs in a
    `tf.data` map, inside a model under XLA and inside an exported SavedModel,
    which therefore takes raw float32 waveforms. It always computes in float32
    (the FFT has no float16 kernel; under a mixed-precision policy the next
    layer casts). With equal settings it reproduces
    `librosa.power_to_db(librosa.feature.melspectrogram(...), ref=1.0,
    amin=1e-10, top_db=80)` transposed to (frames, n_mels): centre padding by
    n_fft // 2 (zeros, or reflection), periodic Hann window of `win_length`
    centred in `n_fft`, |STFT|^power, Slaney (or HTK) mel filters with Slaney
    (area) normalisation, 10·log10, and the 80 dB floor below each clip's
    maximum.

    Args:
        sample_rate: int. Sample rate of the input waveforms.
        n_fft: int. FFT length (samples).
        hop_length: int. Samples between frames.
        win_length: int or None. Window length (None: n_fft).
        n_mels: int. Mel bands.
        fmin: float. Lowest mel edge in Hz.
        fmax: float or None. Highest mel edge (None: sample_rate / 2).
        power: float. Exponent of the magnitude (2: power, 1: magnitude).
        mel_scale: str. `"slaney"` (librosa's default) or `"htk"`.
        norm: str or None. `"slaney"` (librosa's default) or None.
        center: bool. Pad n_fft // 2 on both sides so frame t is centred on
            sample t·hop_length.
        pad_mode: str. `"constant"` (zeros; librosa's default) or `"reflect"`.
        output: str. `"db"` (log-mel, decibels) or `"power"` (mel power).
        amin: float. Floor of the mel power before the log.
        top_db: float or None. Values more than this below the clip's maximum
            are raised to it (per example); None keeps everything.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> layer = mmtl_tf.layers.LogMelSpectrogram(sample_rate=16000, n_mels=40)
        >>> layer(np.zeros((2, 16000), "float32")).shape
        TensorShape([2, 101, 40])

    References:
        Stevens, Volkmann & Newman, "A scale for the measurement of the
        psychological magnitude pitch" (1937); librosa.feature.melspectrogram.
    """

    def __init__(self, sample_rate=16000, n_fft=512, hop_length=160, win_length=None,
                 n_mels=64, fmin=0.0, fmax=None, power=2.0, mel_scale="slaney",
                 norm="slaney", center=True, pad_mode="constant", output="db",
                 amin=1e-10, top_db=80.0, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) \
                or sample_rate < 1:
            # sample_rate=0 said "need 0 <= fmin < fmax <= sample_rate / 2 = 0"; 16000.5
            # was accepted (the mel filters at a fractional rate).
            raise ValueError(f"sample_rate must be an integer >= 1 (samples per second), got "
                             f"{sample_rate!r}.")
        # A fractional n_fft failed when called ("sequence_length"/"fft_length"),
        # top_db <= 0 made every output one constant, and power 0 every bin 1.
        # Whole floats (160.0) and an infinite top_db are accepted as before.
        def whole(name, value):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    not float(value).is_integer() or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
            return int(value)

        n_fft, hop_length, n_mels = (whole(name, value) for name, value in (
            ("n_fft", n_fft), ("hop_length", hop_length), ("n_mels", n_mels)))
        if win_length is not None:
            win_length = whole("win_length", win_length)
        for name, value, finite in (("power", power, True), ("top_db", top_db, False)):
            if name == "top_db" and (value is None or output != "db"):
                continue  # (top_db is not used for power output)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    not 0 < value <= (float("inf") if not finite else np.finfo("float64").max):
                raise ValueError(f"{name} must be a positive number"
                                 f"{' or None' if name == 'top_db' else ''}, got {value!r}.")
        win_length = n_fft if win_length is None else int(win_length)
        for name, value, allowed in (("mel_scale", mel_scale, MEL_SCALES),
                                     ("pad_mode", pad_mode, PAD_MODES),
                                     ("output", output, OUTPUTS),
                                     ("norm", norm, ("slaney", None))):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not allowed; use one of "
                                 f"{', '.join(map(repr, allowed))}.")
        if not (0 < win_length <= n_fft and hop_length > 0 and n_mels > 0):
            raise ValueError(
                f"need 0 < win_length <= n_fft, hop_length > 0 and n_mels > 0; got "
                f"n_fft={n_fft}, win_length={win_length}, hop_length={hop_length}, "
                f"n_mels={n_mels}.")
        top = sample_rate / 2.0 if fmax is None else fmax
        if not 0 <= fmin < top <= sample_rate / 2.0:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2 = {sample_rate / 2:g}; "
                             f"got fmin={fmin}, fmax={fmax}.")
        self.sample_rate, self.n_fft, self.hop_length = int(sample_rate), int(n_fft), int(hop_length)
        self.win_length, self.n_mels = win_length, int(n_mels)
        self.fmin, self.fmax, self.power = float(fmin), fmax, float(power)
        self.mel_scale, self.norm, self.center, self.pad_mode = mel_scale, norm, center, pad_mode
        self.output_kind, self.amin, self.top_db = output, float(amin), top_db
        self._filters = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, mel_scale, norm)
        self._window = periodic_hann(win_length)

    def num_frames(self, num_samples):
        """Frames produced for a clip of `num_samples` samples (None stays None)."""
        if num_samples is None:
            return None
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + (num_samples - self.n_fft) // self.hop_length

    @property
    def min_samples(self):
        """Shortest clip the layer takes: 1 sample with zero centre padding,
        n_fft // 2 + 1 with reflection (it mirrors n_fft // 2 samples), n_fft
        without centring (one whole frame)."""
        if not self.center:
            return self.n_fft
        return 1 if self.pad_mode == "constant" else self.n_fft // 2 + 1

    def _check_input_shape(self, shape):
        shape = tuple(shape)
        if len(shape) not in (1, 2):
            raise ValueError(
                f"LogMelSpectrogram takes mono waveforms of shape (samples,) or (batch, "
                f"samples); got shape {shape}. Average multi-channel audio to mono first "
                "(e.g. keras.ops.mean(x, axis=-1) on (batch, samples, channels), as "
                "mmtl_tf.data.load_audio does).")
        if shape[-1] is not None and shape[-1] < self.min_samples:
            raise ValueError(
                f"LogMelSpectrogram needs clips of at least {self.min_samples} samples "
                f"(n_fft={self.n_fft}, center={self.center}, pad_mode={self.pad_mode!r}); "
                f"got shape {shape}.")

    def call(self, waveforms):
        check_float_waveforms(waveforms, "LogMelSpectrogram")
        x = ops.cast(waveforms, "float32")
        self._check_input_shape(x.shape)
        if self.center:
            pad = self.n_fft // 2
            widths = [(0, 0)] * (len(x.shape) - 1) + [(pad, pad)]
            x = ops.pad(x, widths, mode=self.pad_mode)
        real, imag = ops.stft(x, sequence_length=self.win_length,
                              sequence_stride=self.hop_length, fft_length=self.n_fft,
                              window=self._window, center=False)
        magnitude2 = real * real + imag * imag
        spec = magnitude2 if self.power == 2.0 else ops.power(ops.sqrt(magnitude2), self.power)
        mel = ops.matmul(spec, ops.convert_to_tensor(self._filters))
        if self.output_kind == "power":
            return mel
        db = 10.0 * ops.log(ops.maximum(mel, self.amin)) / np.log(10.0)
        if self.top_db is not None:
            peak = ops.max(db, axis=(-2, -1), keepdims=True)
            db = ops.maximum(db, peak - float(self.top_db))
        return db

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        return (*input_shape[:-1], self.num_frames(input_shape[-1]), self.n_mels)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update({
            "sample_rate": self.sample_rate, "n_fft": self.n_fft,
            "hop_length": self.hop_length, "win_length": self.win_length,
            "n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax,
            "power": self.power, "mel_scale": self.mel_scale, "norm": self.norm,
            "center": self.center, "pad_mode": self.pad_mode, "output": self.output_kind,
            "amin": self.amin, "top_db": self.top_db})
        return config
