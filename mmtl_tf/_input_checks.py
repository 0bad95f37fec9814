"""Input checks shared by layers and losses.

Shape checks use static shapes only (known when a layer is called or traced),
so they also run, at trace time, under `tf.function` and `jit_compile=True`.
Value checks run only on concrete inputs (NumPy arrays, Python lists, eager
tensors): inside a graph the values are unknown and nothing is checked.
"""

import numpy as np


def static_shape(x):
    """The static shape of `x` as a tuple of ints / None, or None if the rank is unknown."""
    shape = getattr(x, "shape", None)
    if shape is None:
        shape = np.shape(x)
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def dims_differ(a, b):
    """True when two static dimensions are both known and different."""
    return a is not None and b is not None and a != b


def concrete_value(x):
    """`x` as a NumPy array when its values are known now, else None.

    Known: NumPy arrays, Python numbers / lists, eager TensorFlow tensors.
    Unknown: symbolic tensors of a `tf.function` / XLA graph, `KerasTensor`s.
    """
    if isinstance(x, (np.ndarray, np.generic, list, tuple, int, float, bool)):
        try:
            return np.asarray(x)
        except ValueError:
            return None
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return None
    if tf.is_tensor(x) and not tf.is_symbolic_tensor(x) and hasattr(x, "numpy"):
        try:
            return np.asarray(x.numpy())
        except Exception:  # e.g. ragged or sparse tensors: leave unchecked
            return None
    return None


def check_not_empty(loss, **tensors):
    """A `ValueError` naming `loss` when a tensor's static batch size (first dim) is 0.

    Concrete inputs (NumPy, eager) always have a static shape, so an empty batch
    of them is refused; in a compiled graph whose batch dimension is unknown
    (None) nothing is checked.
    """
    for name, x in tensors.items():
        shape = static_shape(x)
        if shape and shape[0] == 0:
            raise ValueError(f"{loss}: the batch is empty ({name} has shape {shape}); the "
                             f"loss of 0 examples is undefined, skip empty batches "
                             f"before computing it.")
