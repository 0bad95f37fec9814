"""`AudioEncoder`: the audio tower, a CNN over log-mel spectrograms."""

import os

import keras

from mmtl_tf.errors import check_choice, check_counts
from mmtl_tf.files import user_path
from mmtl_tf.layers.log_mel_spectrogram import LogMelSpectrogram, check_float_waveforms
from mmtl_tf.saving import rebuild, saved_state

INPUTS = ("waveform", "log_mel")
POOLINGS = ("avg", "max", "time_avg")
TRAINABLE = ("full", "frozen")
# The front-end settings two encoders must share for one's weights to mean
# the same in the other (`load_pretrained`; the pooling after the convolutions
# does not change what their weights read).
_SAME_MEANING = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax")


def _find_audio_encoder(model):
    """The first `AudioEncoder` in `model` (itself, or nested at any depth)."""
    if isinstance(model, AudioEncoder):
        return model
    for layer in getattr(model, "layers", []):
        found = _find_audio_encoder(layer)
        if found is not None:
            return found
    return None


def check_tower_settings(audio_encoder, audio_weights=None, audio_trainable="full",
                         **settings):
    """A `ValueError` when a model builder gets a tower of your own
    (`audio_encoder`) and also `audio_weights` or an `audio_trainable` other
    than "full", which only a tower it builds takes: they were ignored (the
    tower kept random weights and trained with `audio_trainable="frozen"`).
    `settings`: the builder's tower arguments, `ARG=(encoder setting, value,
    default)`; one other than the builder's default that differs from the
    tower's own setting is refused too (`n_mels=40` beside a 64-mel tower was
    ignored). A value equal to the builder's default cannot be told from one
    not given, and is not checked."""
    if audio_encoder is None:
        return
    given = [f"{name}={value!r}" for name, value, default in (
        ("audio_weights", audio_weights, None), ("audio_trainable", audio_trainable, "full"))
        if value != default]
    if given:
        raise ValueError(f"{' and '.join(given)} with an audio_encoder of your own: give "
                         "them to the tower (AudioEncoder(weights=..., trainable=...)), or "
                         "leave audio_encoder out to have one built.")

    def plain(value, name=None):
        import numbers

        import numpy as np

        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            return [int(v) for v in value]
        if name == "conv_filters" and isinstance(value, numbers.Integral) and \
                not isinstance(value, bool):
            return [int(value)]  # (one block)
        return value

    own = getattr(audio_encoder, "_config", {})
    differ = [f"{name}={value!r} (the tower's {key} is {own[key]!r})"
              for name, (key, value, default) in settings.items()
              if plain(value, key) != plain(default, key) and key in own
              and plain(value, key) != plain(own[key], key)]
    if differ:
        raise ValueError(f"{', '.join(differ)}: the audio_encoder of your own decides these "
                         "(they were ignored); leave them out, or leave audio_encoder out.")


# A model builder's tower argument → (the AudioEncoder setting, the builder's default).
_TOWER_ARGUMENTS = {"num_samples": ("num_samples", 32000), "sample_rate": ("sample_rate", 16000),
                    "n_mels": ("n_mels", 64), "n_fft": ("n_fft", 512),
                    "conv_filters": ("conv_filters", (32, 64, 128)),
                    "audio_input": ("input_type", "waveform"),
                    "audio_pooling": ("pooling", "time_avg"), "pooling": ("pooling", "time_avg")}


def tower_settings(**given):
    """`check_tower_settings`' `settings` for a builder's tower arguments."""
    return {name: (_TOWER_ARGUMENTS[name][0], value, _TOWER_ARGUMENTS[name][1])
            for name, value in given.items()}


@keras.saving.register_keras_serializable(package="mmtl_tf")
class AudioEncoder(keras.Model):
    """Audio tower: float32 waveform (or log-mel) → a pooled feature vector.

    waveform (B, num_samples) → `LogMelSpectrogram` (B, frames, n_mels) →
    per-clip normalisation (zero mean, unit variance over time and frequency,
    so loudness does not matter) → `len(conv_filters)` blocks of Conv2D(3×3,
    same) → BatchNormalization → ReLU → MaxPool(2×2) → pooling (by default an
    average over time that keeps the pooled mel bands apart; on the bundled
    spoken-emoji sample it beat global average pooling clearly) → optional
    Dense(output_dim, relu).

    The log-mel front end is part of the model, so a trained or exported model
    takes raw float32 waveforms at `sample_rate`.

    Args:
        num_samples: int. Samples per input clip (waveform input); frames are
            derived from it.
        sample_rate: int. Sample rate of the waveforms.
        input_type: str. `"waveform"` or `"log_mel"` (then the input is
            (B, frames, n_mels) log-mels made by the same front end, e.g. in
            `tf.data`, and `num_samples` only sets the frame count).
        n_fft: int. Front-end FFT length.
        hop_length: int. Front-end hop.
        n_mels: int. Mel bands.
        fmin: float. Lowest mel edge (Hz).
        fmax: float or None. Highest mel edge (None: sample_rate / 2).
        conv_filters: sequence of int (an int: one block). Filters of each conv block.
        pooling: str. `"avg"` or `"max"` over time and frequency, or
            `"time_avg"`: average over time only, keeping the (pooled) mel
            bands apart (`n_mels / 2**blocks × conv_filters[-1]` features).
        output_dim: int or None. Width of a final Dense(relu) layer; None
            returns the pooled conv features (`conv_filters[-1]` wide).
        dropout: float. Dropout before the final Dense layer.
        weights: None or str. Start from trained weights: a `.keras` file of any
            model that contains an `AudioEncoder` with the same configuration
            (e.g. an audio classifier or audio-text model trained with mmtl_tf),
            or an `AudioEncoder` `.weights.h5` file.
        trainable: str. `"full"` or `"frozen"` (feature extractor; its
            BatchNormalization then uses the moving statistics).
        batch_norm_momentum: float. Momentum of the BatchNormalization moving
            statistics (Keras' 0.99 by default). With few training steps (a
            few hundred) the moving statistics still remember their
            initialisation at 0.99 and inference-mode outputs drift from the
            training-mode ones; 0.9 follows the batches faster.
        name: str.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> enc = mmtl_tf.encoders.AudioEncoder(num_samples=16000, conv_filters=(8, 16))
        >>> tuple(enc(np.zeros((2, 16000), "float32")).shape)  # 64 mels / 4 × 16 filters
        (2, 256)

    References:
        Hershey et al., "CNN Architectures for Large-Scale Audio Classification"
        (2017); Kong et al., "PANNs" (2020).
    """

    def __init__(self, num_samples=32000, sample_rate=16000, input_type="waveform",
                 n_fft=512, hop_length=160, n_mels=64, fmin=20.0, fmax=None,
                 conv_filters=(32, 64, 128), pooling="time_avg", output_dim=None, dropout=0.0,
                 weights=None, trainable="full", batch_norm_momentum=0.99,
                 name="audio_encoder", **kwargs):
        check_choice("input_type", input_type, INPUTS)
        check_choice("pooling", pooling, POOLINGS)
        check_choice("trainable", trainable, TRAINABLE)
        conv_filters = check_counts("conv_filters", conv_filters, each="conv block")
        if int(num_samples) < n_fft:
            raise ValueError(
                f"need num_samples >= n_fft ({n_fft}); got num_samples={num_samples}.")
        front_end = LogMelSpectrogram(sample_rate=sample_rate, n_fft=n_fft,
                                      hop_length=hop_length, n_mels=n_mels, fmin=fmin,
                                      fmax=fmax, name="log_mel")
        frames = front_end.num_frames(int(num_samples))
        if frames < 2 ** len(conv_filters):
            raise ValueError(
                f"{len(conv_filters)} pooling blocks need at least {2 ** len(conv_filters)} "
                f"frames; num_samples={num_samples} gives {frames}.")
        if int(n_mels) < 2 ** len(conv_filters):
            # (Keras' "Computed output size would be zero or negative" named neither.)
            raise ValueError(
                f"{len(conv_filters)} pooling blocks need at least {2 ** len(conv_filters)} "
                f"mel bands; got n_mels={n_mels} (raise n_mels or give fewer conv_filters).")
        if input_type == "waveform":
            inputs = keras.Input((int(num_samples),), dtype="float32", name="audio")
            x = front_end(inputs)
        else:
            inputs = keras.Input((frames, n_mels), dtype="float32", name="audio")
            x = inputs
        x = keras.layers.Reshape((frames, n_mels, 1), name="add_channel")(x)
        x = keras.layers.LayerNormalization(axis=[1, 2], center=False, scale=False,
                                            epsilon=1e-3, name="normalize")(x)
        for i, filters in enumerate(conv_filters, start=1):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    name=f"conv{i}")(x)
            x = keras.layers.BatchNormalization(momentum=float(batch_norm_momentum),
                                                name=f"bn{i}")(x)
            x = keras.layers.ReLU(name=f"relu{i}")(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        if pooling == "time_avg":
            # Average over time only; frequency bands stay separate features.
            x = keras.layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]),
                                     name="merge_bands")(x)
            x = keras.layers.GlobalAveragePooling1D(name="time_avg_pool")(x)
        else:
            pool = (keras.layers.GlobalAveragePooling2D if pooling == "avg"
                    else keras.layers.GlobalMaxPooling2D)
            x = pool(name=f"{pooling}_pool")(x)
        if output_dim:
            if dropout:
                x = keras.layers.Dropout(dropout, name="dropout")(x)
            x = keras.layers.Dense(int(output_dim), activation="relu", name="projection")(x)
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)
        self._config = {
            "num_samples": int(num_samples), "sample_rate": int(sample_rate),
            "input_type": input_type, "n_fft": int(n_fft), "hop_length": int(hop_length),
            "n_mels": int(n_mels), "fmin": float(fmin), "fmax": fmax,
            "conv_filters": list(conv_filters), "pooling": pooling,
            "output_dim": output_dim, "dropout": float(dropout),
            # A saved model carries its weights: never reload the file on load.
            "weights": None, "trainable": trainable,
            "batch_norm_momentum": float(batch_norm_momentum),
        }
        if weights is not None:
            self.load_pretrained(weights)
        if trainable == "frozen":
            self.trainable = False

    def load_pretrained(self, path):
        """Copies the weights of a trained `AudioEncoder` into this one.

        Args:
            path: str. A `.keras` file holding a model with an `AudioEncoder`
                inside (same configuration), or a `.weights.h5` file of one.

        Raises:
            ValueError: the `.keras` file's encoder was built with another
                front end (`sample_rate`, `n_fft`, `hop_length`, `n_mels`,
                `fmin`, `fmax`; None for `fmax` is half the sample rate; the
                clip length, input type and pooling may differ), or its
                weights have other shapes. A
                `.weights.h5` file holds no settings: only shapes are checked.
        """
        path = user_path(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file {path!r} does not exist.")
        if path.endswith(".weights.h5"):
            try:
                self.load_weights(path)
            except Exception as e:
                raise ValueError(f"weights file {path!r} does not fit this AudioEncoder "
                                 f"({type(e).__name__}: {e}).") from e
            return
        if not path.endswith(".keras"):
            raise ValueError(f"weights={path!r}: expected a .keras or .weights.h5 file.")
        source = _find_audio_encoder(keras.saving.load_model(path, compile=False))
        if source is None:
            raise ValueError(f"{path!r} holds no AudioEncoder.")
        # Settings that change what the weights mean without changing their
        # shapes (the conv kernels do not depend on n_mels or the rate): a
        # 40-mel 16 kHz tower loaded into a 16-mel 8 kHz one without a word.
        # The clip length and the input type may differ.
        def front_end(config):  # fmax None is the Nyquist frequency
            settings = {key: config.get(key) for key in _SAME_MEANING}
            if settings["fmax"] is None and settings["sample_rate"]:
                settings["fmax"] = settings["sample_rate"] / 2
            return settings

        theirs, ours = front_end(getattr(source, "_config", {})), front_end(self._config)
        differ = [f"{key} {theirs[key]!r} there, {ours[key]!r} here"
                  for key in _SAME_MEANING if theirs[key] != ours[key]]
        if differ:
            raise ValueError(
                f"the AudioEncoder in {path!r} was built with other settings: "
                f"{'; '.join(differ)}; its weights would read other features. Build this "
                "encoder with the same front end (num_samples, input_type and pooling may "
                "differ).")
        theirs, ours = source.get_weights(), self.get_weights()
        mismatch = [(a.shape, b.shape) for a, b in zip(theirs, ours) if a.shape != b.shape]
        if len(theirs) != len(ours) or mismatch:
            raise ValueError(
                f"the AudioEncoder in {path!r} has another configuration "
                f"({len(theirs)} vs {len(ours)} weights; differing shapes: {mismatch[:3]}); "
                "build this encoder with the same conv_filters, n_mels and output_dim.")
        self.set_weights(theirs)

    @property
    def output_dim(self):
        return self.output.shape[-1]

    @property
    def front_end(self):
        """The `LogMelSpectrogram` layer (use it in tf.data for log-mel input)."""
        return self.get_layer("log_mel") if self._config["input_type"] == "waveform" \
            else LogMelSpectrogram(sample_rate=self._config["sample_rate"],
                                   n_fft=self._config["n_fft"],
                                   hop_length=self._config["hop_length"],
                                   n_mels=self._config["n_mels"], fmin=self._config["fmin"],
                                   fmax=self._config["fmax"])

    def call(self, inputs, training=None, mask=None):
        if self._config["input_type"] == "waveform":  # before Keras casts them to float32
            for x in keras.tree.flatten(inputs):
                check_float_waveforms(x, f"AudioEncoder {self.name!r}")
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {"name": self.name, **self._config, **saved_state(self)}

    @classmethod
    def from_config(cls, config):
        return rebuild(cls, config)  # with the flags of freezing layers after building
