"""`ProjectionHead`: maps a tower's features into the shared embedding space."""

import keras

_ACTIVATIONS = ("gelu", "relu")


@keras.saving.register_keras_serializable(package="mmtl_tf")
class ProjectionHead(keras.layers.Layer):
    """A linear map (CLIP) or a small MLP (SimCLR) into the shared space.

    `hidden_dim=None` is CLIP's choice: one Dense layer without bias from the
    tower's feature width to `projection_dim`. With `hidden_dim` it is
    Dense(hidden_dim) → activation → dropout → Dense(projection_dim), and
    `residual=True` adds the first projection back before a LayerNorm (the
    keras-io dual-encoder head).

    Args:
        projection_dim: int. Width of the shared space.
        hidden_dim: int or None. Width of the hidden layer; None for a single
            linear projection.
        activation: str. `"gelu"` or `"relu"` (hidden layer only).
        dropout: float. Dropout rate after the hidden layer.
        residual: bool. Only with `hidden_dim`: out = LayerNorm(p + MLP(p))
            where p is a first linear projection to `projection_dim`.
        use_bias: bool. Bias in the Dense layers.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> head = mmtl_tf.layers.ProjectionHead(8)
        >>> tuple(head(np.ones((2, 5), "float32")).shape)
        (2, 8)

    References:
        Radford et al. 2021, "Learning Transferable Visual Models From Natural
        Language Supervision" (CLIP); Chen et al. 2020, "A Simple Framework for
        Contrastive Learning of Visual Representations" (SimCLR).
    """

    def __init__(self, projection_dim=256, hidden_dim=None, activation="gelu", dropout=0.0,
                 residual=False, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        if int(projection_dim) < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}.")
        if hidden_dim is not None and int(hidden_dim) < 1:
            raise ValueError(f"hidden_dim must be None or >= 1, got {hidden_dim}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not allowed; use one of "
                             f"{', '.join(map(repr, _ACTIVATIONS))}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if residual and hidden_dim is None:
            raise ValueError("residual=True needs a hidden_dim (an MLP to add back).")
        self.projection_dim = int(projection_dim)
        self.hidden_dim = None if hidden_dim is None else int(hidden_dim)
        self.activation = activation
        self.dropout = float(dropout)
        self.residual = bool(residual)
        self.use_bias = bool(use_bias)
        policy = self.dtype_policy
        if self.hidden_dim is None:
            self.dense = keras.layers.Dense(self.projection_dim, use_bias=self.use_bias,
                                            dtype=policy, name="dense")
        else:
            if self.residual:
                self.first = keras.layers.Dense(self.projection_dim, use_bias=self.use_bias,
                                                dtype=policy, name="first")
            self.hidden = keras.layers.Dense(self.hidden_dim, activation=activation,
                                             use_bias=self.use_bias, dtype=policy,
                                             name="hidden")
            self.drop = keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
            self.dense = keras.layers.Dense(self.projection_dim, use_bias=self.use_bias,
                                            dtype=policy, name="dense")
            if self.residual:
                self.norm = keras.layers.LayerNormalization(dtype=policy, name="norm")

    def build(self, input_shape):
        if self.hidden_dim is None:
            self.dense.build(input_shape)
            return
        if self.residual:
            self.first.build(input_shape)
            self.hidden.build((*input_shape[:-1], self.projection_dim))
            self.norm.build((*input_shape[:-1], self.projection_dim))
        else:
            self.hidden.build(input_shape)
        self.dense.build((*input_shape[:-1], self.hidden_dim))

    def call(self, inputs, training=None):
        if self.hidden_dim is None:
            return self.dense(inputs)
        x = self.first(inputs) if self.residual else inputs
        y = self.dense(self.drop(self.hidden(x), training=training))
        return self.norm(x + y) if self.residual else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.projection_dim)

    def get_config(self):
        return {**super().get_config(), "projection_dim": self.projection_dim,
                "hidden_dim": self.hidden_dim, "activation": self.activation,
                "dropout": self.dropout, "residual": self.residual,
                "use_bias": self.use_bias}
