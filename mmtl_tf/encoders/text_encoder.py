"""`TextEncoder`: token ids → Embedding → LSTM → a feature vector."""

import keras

from mmtl_tf import runtime
from mmtl_tf.saving import rebuild, saved_state


@keras.saving.register_keras_serializable(package="mmtl_tf")
class TextEncoder(keras.Model):
    """Text tower of the source document: Embedding followed by an LSTM.

    Args:
        vocab_size: int. Size of the token-id vocabulary (id 0 is padding).
        sequence_length: int. Token ids per text.
        embedding_dim: int. Embedding width.
        lstm_units: int. LSTM width (the output size; twice that if
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
        if vocab_size < 2 or sequence_length < 1 or embedding_dim < 1 or lstm_units < 1:
            raise ValueError(
                "vocab_size >= 2, sequence_length >= 1, embedding_dim >= 1 and "
                f"lstm_units >= 1 are required; got vocab_size={vocab_size}, "
                f"sequence_length={sequence_length}, embedding_dim={embedding_dim}, "
                f"lstm_units={lstm_units}.")
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
