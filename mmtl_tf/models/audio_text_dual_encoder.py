"""`build_audio_text_dual_encoder`: audio and text towers → one embedding space."""

import keras

from mmtl_tf.encoders.audio_encoder import (AudioEncoder, check_tower_settings,
                                            tower_settings)
from mmtl_tf.encoders.text_encoder import TextEncoder
from mmtl_tf.models.dual_encoder import DualEncoder
from mmtl_tf.models.embedding_model import tower_input


def build_audio_text_dual_encoder(audio_encoder=None, text_encoder=None, *,
                                  num_samples=32000, sample_rate=16000, n_mels=64, n_fft=512,
                                  conv_filters=(32, 64, 128), audio_pooling="time_avg",
                                  audio_weights=None, audio_trainable="full",
                                  audio_batch_norm_momentum=0.9, vocab_size=5000,
                                  sequence_length=16, embedding_dim=64, lstm_units=128,
                                  bidirectional=False,
                                  projection_dim=128, projection_hidden_dim=None,
                                  dropout=0.0, loss="clip", learn_logit_scale=True,
                                  name="audio_text_dual_encoder"):
    """An audio–text dual encoder (CLAP-style): `encode_audio`, `encode_text`, one space.

    The `DualEncoder` of the shared-embedding-space models with an audio tower
    in place of the image tower: `{"audio": AudioEncoder, "text": TextEncoder
    (or BertEncoder)}`, each followed by a projection head and L2
    normalisation, trained with the CLIP (or SigLIP) loss on matched
    (clip, caption) pairs. The audio tower's log-mel front end is inside the
    model, so it takes raw float32 waveforms at `sample_rate`. Audio is the
    first modality: `evaluate_retrieval` reports `audio_to_text_*` and
    `text_to_audio_*`.

    Args:
        audio_encoder: keras.Model or None. The audio tower (e.g. an
            `AudioEncoder` built with `weights=` from an audio classifier
            trained here); None builds an `AudioEncoder` from `num_samples`,
            `sample_rate`, `n_mels`, `n_fft`, `conv_filters`, `audio_pooling`,
            `audio_weights` and `audio_trainable` (with a tower of your own,
            `audio_weights` or a non-default `audio_trainable` is a
            `ValueError`: give them to the tower; they were ignored).
        text_encoder: keras.Model or None. The text tower (`TextEncoder` on
            token ids, or `BertEncoder` on `{"token_ids", "padding_mask"}`);
            None builds a `TextEncoder` from `vocab_size`, `sequence_length`,
            `embedding_dim`, `lstm_units` and `bidirectional`.
        num_samples: int. Samples per clip (e.g. 1.5 s at 16 kHz = 24000).
        sample_rate: int. Sample rate of the waveforms.
        n_mels: int. Mel bands of the front end.
        n_fft: int. FFT length of the front end.
        conv_filters: sequence of int. Filters of the audio CNN blocks.
        audio_pooling: str. `"time_avg"`, `"avg"` or `"max"` (see `AudioEncoder`).
        audio_weights: str or None. A `.keras` file holding a trained
            `AudioEncoder` of the same configuration, or its `.weights.h5`.
        audio_trainable: str. `"full"` or `"frozen"`.
        audio_batch_norm_momentum: float. Momentum of the audio CNN's
            BatchNormalization statistics. 0.9 here, not Keras' 0.99: with the
            few hundred steps a small audio-text set gives, statistics at 0.99
            still remember their initialisation, and in inference mode every
            clip's embedding drifts towards one point (on the bundled sample
            all 285 test clips then retrieved the same caption).
        vocab_size: int. Token-id vocabulary size (0 = padding).
        sequence_length: int. Token ids per caption.
        embedding_dim: int. Text embedding width.
        lstm_units: int. LSTM width.
        bidirectional: bool. Bidirectional LSTM.
        projection_dim: int. Width of the shared space.
        projection_hidden_dim: int or None. MLP projection heads (None: linear).
        dropout: float. Dropout inside MLP projection heads.
        loss: str. `"clip"` or `"siglip"`.
        learn_logit_scale: bool. Learn the temperature (CLIP) or keep it fixed.
        name: str.

    Returns:
        A `DualEncoder` with inputs `{"audio": float32 (B, num_samples), "text":
        int32 (B, sequence_length)}` and outputs `audio_embeddings`,
        `text_embeddings` (float32, unit length) and `logit_scale`; its
        `encode_audio(waveforms)` and `encode_text(token_ids)` embed one side.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> model = mmtl_tf.models.build_audio_text_dual_encoder(
        ...     num_samples=16000, vocab_size=100, sequence_length=8, projection_dim=32)
        >>> tuple(model.encode_audio(np.zeros((2, 16000), "float32")).shape)
        (2, 32)

    References:
        Elizalde et al. 2023, "CLAP: Learning Audio Concepts from Natural
        Language Supervision"; Radford et al. 2021 (CLIP); LAION CLAP's
        `get_audio_embedding` / `get_text_embedding`.
    """
    check_tower_settings(audio_encoder, audio_weights, audio_trainable, **tower_settings(
        num_samples=num_samples, sample_rate=sample_rate, n_mels=n_mels, n_fft=n_fft,
        conv_filters=conv_filters, audio_pooling=audio_pooling))
    if audio_encoder is None:
        audio_encoder = AudioEncoder(num_samples=num_samples, sample_rate=sample_rate,
                                     n_mels=n_mels, n_fft=n_fft, conv_filters=conv_filters,
                                     pooling=audio_pooling, weights=audio_weights,
                                     trainable=audio_trainable,
                                     batch_norm_momentum=audio_batch_norm_momentum)
    if text_encoder is None:
        text_encoder = TextEncoder(vocab_size=vocab_size, sequence_length=sequence_length,
                                   embedding_dim=embedding_dim, lstm_units=lstm_units,
                                   bidirectional=bidirectional)
    for role, tower in (("audio_encoder", audio_encoder), ("text_encoder", text_encoder)):
        if not isinstance(tower, keras.Model):
            raise TypeError(f"{role} must be a keras.Model or None; got "
                            f"{type(tower).__name__}.")
    if audio_encoder is text_encoder:
        raise ValueError("audio_encoder and text_encoder are the same object; a dual "
                         "encoder needs one tower per modality.")
    audio_input = tower_input(audio_encoder)
    if isinstance(audio_input, (dict, list, tuple)) or audio_input.dtype != "float32":
        raise ValueError("the audio tower must take one float32 tensor (waveforms or "
                         f"log-mels); {audio_encoder.name!r} takes {audio_input}.")
    return DualEncoder({"audio": audio_encoder, "text": text_encoder},
                       projection_dim=projection_dim,
                       projection_hidden_dim=projection_hidden_dim, dropout=dropout,
                       loss=loss, learn_logit_scale=learn_logit_scale, name=name)
