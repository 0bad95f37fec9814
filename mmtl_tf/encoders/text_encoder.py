"""`TextEncoder`: token ids → Embedding → LSTM → a feature vector."""

import keras
import numpy as np

from mmtl_tf import runtime
from mmtl_tf.errors import check_count
from mmtl_tf.saving import rebuild, saved_state


@keras.saving.register_keras_serializable(package="mmtl_tf")
class TextEncoder(keras.Model):
    """Text tower of the source document: Embedding followed by an LSTM.

    The integer sizes are checked before anything is built: a str, float,
    bool or too small a value raises a `ValueError` naming the argument and
    the value (NumPy integers are accepted), and so do non-bool flags and an
    `embeddings` matrix of another shape than (vocab_size, embedding_dim).

    Args:
        vocab_size: int >= 2. Size of the token-id vocabulary (id 0 is padding).
        sequence_length: int >= 1. Token ids per text.
        embedding_dim: int >= 1. Embedding width.
        lstm_units: int >= 1. LSTM width (the output size; twice that if
            `bidirectional`).
        mask_zero: bool. Mask padding ids so the LSTM's final state is the state
            after the last real token (the document did not mask: its LSTM also
            ran over the trailing padding).
        bidirectional: bool. Wrap the LSTM in `Bidirectional`.
        embeddings: array or None. Initial embedding matrix (vocab_size,
            embedding_dim), e.g. GloVe vectors.
        train_embeddings: bool. Whether the embedding matrix is trained.
        use_cudnn: bool, "auto" or None. None asks `mmtl_tf.runtime.lstm_use_cudnn()`:
            `False` while `jit_compile` is on, because Keras' cuDNN LSTM kernel
            cannot be compiled by XLA (keras issue 18456) and Keras would
            otherwise silently turn XLA off for the whole model; `"auto"` (cuDNN on
            a GPU) when XLA is off.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> enc = mmtl_tf.encoders.TextEncoder(vocab_size=100, sequence_length=8)
        >>> tuple(enc(np.ones((2, 8), "int32")).shape)
        (2, 64)
    """

    def __init__(self, vocab_size=5000, sequence_length=100, embedding_dim=128,
                 lstm_units=64, mask_zero=True, bidirectional=False, embeddings=None,
                 train_embeddings=True, use_cudnn=None, name="text_encoder", **kwargs):
        # Checked here: Keras' own errors for a str / float / bool size come
        # from deep inside a layer and do not name the argument.
        vocab_size = check_count("vocab_size", vocab_size, minimum=2)
        sequence_length = check_count("sequence_length", sequence_length)
        embedding_dim = check_count("embedding_dim", embedding_dim)
        lstm_units = check_count("lstm_units", lstm_units)
        for flag, value in (("mask_zero", mask_zero), ("bidirectional", bidirectional),
                            ("train_embeddings", train_embeddings)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{flag} must be True or False, got {value!r}.")
        mask_zero, bidirectional = bool(mask_zero), bool(bidirectional)
        train_embeddings = bool(train_embeddings)
        if not (use_cudnn is None or isinstance(use_cudnn, (bool, np.bool_))
                or (isinstance(use_cudnn, str) and use_cudnn == "auto")):
            raise ValueError(f"use_cudnn must be None, True, False or 'auto', got "
                             f"{use_cudnn!r}.")
        if embeddings is not None and np.shape(embeddings) != (vocab_size, embedding_dim):
            raise ValueError(f"embeddings must be a (vocab_size, embedding_dim) = "
                             f"({vocab_size}, {embedding_dim}) matrix; got shape "
                             f"{np.shape(embeddings)}.")
        resolved_cudnn = runtime.lstm_use_cudnn() if use_cudnn is None else use_cudnn
        inputs = keras.Input((sequence_length,), dtype="int32", name="text")
        initializer = "uniform"
        if embeddings is not None:
            initializer = keras.initializers.Constant(embeddings)
        embedding = keras.layers.Embedding(
            vocab_size, embedding_dim, mask_zero=mask_zero,
            embeddings_initializer=initializer, name="embedding")
        embedding.trainable = train_embeddings
        x = embedding(inputs)
        lstm = keras.layers.LSTM(lstm_units, use_cudnn=resolved_cudnn, name="lstm")
        if bidirectional:
            lstm = keras.layers.Bidirectional(lstm, name="bilstm")
        x = lstm(x)
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)
        self._config = {
            "vocab_size": vocab_size, "sequence_length": sequence_length,
            "embedding_dim": embedding_dim, "lstm_units": lstm_units,
            "mask_zero": mask_zero, "bidirectional": bidirectional,
            "train_embeddings": train_embeddings, "use_cudnn": use_cudnn,
        }

    @property
    def output_dim(self):
        return self.output.shape[-1]

    def get_config(self):
        return {"name": self.name, **self._config, **saved_state(self)}

    @classmethod
    def from_config(cls, config):
        return rebuild(cls, config)  # with the flags of freezing layers after building
