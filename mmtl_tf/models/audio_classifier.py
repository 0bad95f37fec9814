"""Audio-only classifier: `AudioEncoder` + a softmax head (spoken-word classes)."""

import keras

from mmtl_tf.encoders.audio_encoder import (INPUTS, AudioEncoder, check_tower_settings,
                                            tower_settings)
from mmtl_tf.errors import check_choice, check_count
from mmtl_tf.models.embedding_model import tower_input
from mmtl_tf.models.fusion_classifier import classification_head


def build_audio_classifier(num_samples=32000, sample_rate=16000, num_classes=2,
                           n_mels=64, n_fft=512, conv_filters=(32, 64, 128),
                           hidden_units=None,
                           dropout=0.0, audio_encoder=None, audio_input="waveform",
                           pooling="time_avg",
                           name="audio_classifier"):
    """Waveform → `AudioEncoder` → (Dense) → class probabilities.

    Trains spoken-word classification; the trained file is also a source of
    weights for `AudioEncoder(weights="model.keras")` inside other audio
    models (transfer learning).

    Args:
        num_samples: int. Samples per clip.
        sample_rate: int.
        num_classes: int. 1 → sigmoid; > 1 → softmax.
        n_mels: int. Mel bands.
        n_fft: int. FFT length of the front end.
        conv_filters: sequence of int (an int: one block). Filters of the CNN blocks.
        hidden_units: int >= 1 or None. A Dense(relu) layer before the head.
        dropout: float. Dropout before the head.
        audio_encoder: `AudioEncoder` or None (None builds one from the
            arguments above; with a tower of your own, an argument above given
            with a value the tower does not have is a `ValueError`: it was
            ignored).
        audio_input: str. `"waveform"` or `"log_mel"`.
        pooling: str. `AudioEncoder` pooling (`"avg"`, `"max"`, `"time_avg"`).
        name: str.

    Returns:
        A Functional `keras.Model`: {"audio": float32 (B, num_samples)} →
        float32 probabilities (B, num_classes).

    Example:
        >>> import mmtl_tf
        >>> model = mmtl_tf.models.build_audio_classifier(num_samples=16000, num_classes=9)
        >>> model.output.shape
        (None, 9)

    References:
        Hershey et al., "CNN Architectures for Large-Scale Audio Classification" (2017).
    """
    num_classes = check_count("num_classes", num_classes)
    if hidden_units is not None:
        hidden_units = check_count("hidden_units", hidden_units)
    check_tower_settings(audio_encoder, **tower_settings(
        num_samples=num_samples, sample_rate=sample_rate, n_mels=n_mels, n_fft=n_fft,
        conv_filters=conv_filters, audio_input=audio_input, pooling=pooling))
    if audio_encoder is None:
        check_choice("audio_input", audio_input, INPUTS)
        audio_encoder = AudioEncoder(num_samples=num_samples, sample_rate=sample_rate,
                                     input_type=audio_input, n_mels=n_mels, n_fft=n_fft,
                                     conv_filters=conv_filters, pooling=pooling)
    audio_in = keras.Input(tower_input(audio_encoder).shape[1:], dtype="float32", name="audio")
    x = audio_encoder(audio_in)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model({"audio": audio_in}, classification_head(x, num_classes), name=name)
