"""Audio-text fusion classifier: an audio branch and a text branch, concatenated."""

import keras

from mmtl_tf.encoders.audio_encoder import (AudioEncoder, check_tower_settings,
                                            tower_settings)
from mmtl_tf.encoders.text_encoder import TextEncoder
from mmtl_tf.errors import check_count
from mmtl_tf.models.fusion_classifier import fusion_head


def build_audio_text_fusion_classifier(num_samples=32000, sample_rate=16000,
                                       vocab_size=5000, sequence_length=16,
                                       embedding_dim=128, lstm_units=64, n_mels=64, n_fft=512,
                                       conv_filters=(32, 64, 128), hidden_units=64,
                                       num_classes=1, audio_encoder=None,
                                       audio_weights=None, audio_trainable="full",
                                       audio_input="waveform", audio_pooling="time_avg",
                                       dropout=0.0,
                                       fusion_dropout=0.0, mask_zero=True,
                                       name="audio_text_fusion_classifier"):
    """Audio branch + text branch, concatenated, then a small classifier.

    The audio-text counterpart of `build_fusion_classifier` (source document,
    section 4.1.1, with the image CNN replaced by a CNN over log-mels; section
    3.1.2 for the audio side). Audio: `AudioEncoder` (float32 waveforms in; the
    log-mel front end is inside the model). Text: `TextEncoder` (Embedding →
    LSTM on token ids from `mmtl_tf.data.make_text_vectorizer`). Their features
    are concatenated → Dense(hidden_units, relu) → Dense(num_classes).

    Args:
        num_samples: int. Samples per clip (e.g. 2 s at 16 kHz = 32000).
        sample_rate: int. Sample rate of the waveforms.
        vocab_size: int. Token-id vocabulary size (0 = padding).
        sequence_length: int. Token ids per caption.
        embedding_dim: int. Text embedding width.
        lstm_units: int. LSTM width.
        n_mels: int. Mel bands of the audio front end.
        n_fft: int. FFT length of the audio front end.
        conv_filters: sequence of int. Filters of the audio CNN's blocks.
        hidden_units: int. Width of the fusion Dense layer.
        num_classes: int. 1 → one sigmoid output; > 1 → softmax.
        audio_encoder: `AudioEncoder` or None. Use this tower (e.g. one built
            with `weights=` from an audio classifier trained here); None builds
            one from the arguments above and below (with a tower of your own,
            `audio_weights` or a non-default `audio_trainable` is a
            `ValueError`: give them to the tower; they were ignored).
        audio_weights: str or None. Start the audio tower from a trained
            model's `AudioEncoder` (see `AudioEncoder(weights=...)`).
        audio_trainable: str. `"full"` or `"frozen"`.
        audio_input: str. `"waveform"` or `"log_mel"` (features from tf.data).
        audio_pooling: str. `AudioEncoder` pooling (`"avg"`, `"max"`, `"time_avg"`).
        dropout: float. Dropout after the fusion Dense layer.
        fusion_dropout: float. Dropout on the concatenated features.
        mask_zero: bool. Mask text padding in the LSTM.
        name: str.

    Returns:
        A Functional `keras.Model` with inputs `{"audio": float32 (B,
        num_samples) (or (B, frames, n_mels)), "text": int32 (B,
        sequence_length)}` and float32 probabilities (B, num_classes).

    Example:
        >>> import mmtl_tf
        >>> model = mmtl_tf.models.build_audio_text_fusion_classifier(
        ...     num_samples=16000, vocab_size=1000, num_classes=9)
        >>> model.output.shape
        (None, 9)

    References:
        Source document, sections 3.1.2 (audio-text) and 4.1.1 (fusion).
    """
    num_classes = check_count("num_classes", num_classes)
    check_tower_settings(audio_encoder, audio_weights, audio_trainable, **tower_settings(
        num_samples=num_samples, sample_rate=sample_rate, n_mels=n_mels, n_fft=n_fft,
        conv_filters=conv_filters, audio_input=audio_input, audio_pooling=audio_pooling))
    if audio_encoder is None:
        audio_encoder = AudioEncoder(num_samples=num_samples, sample_rate=sample_rate,
                                     input_type=audio_input, n_mels=n_mels, n_fft=n_fft,
                                     conv_filters=conv_filters, pooling=audio_pooling,
                                     weights=audio_weights, trainable=audio_trainable)
    elif not isinstance(audio_encoder, AudioEncoder):
        raise TypeError(f"audio_encoder must be an AudioEncoder or None; got "
                        f"{type(audio_encoder).__name__}.")
    text_tower = TextEncoder(vocab_size=vocab_size, sequence_length=sequence_length,
                             embedding_dim=embedding_dim, lstm_units=lstm_units,
                             mask_zero=mask_zero)
    audio_in = keras.Input(audio_encoder.input.shape[1:], dtype="float32", name="audio")
    text_in = keras.Input((sequence_length,), dtype="int32", name="text")
    outputs = fusion_head([audio_encoder(audio_in), text_tower(text_in)], hidden_units,
                          num_classes, dropout=dropout, fusion_dropout=fusion_dropout)
    return keras.Model({"audio": audio_in, "text": text_in}, outputs, name=name)
