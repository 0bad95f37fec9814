"""What `.keras` files of mmtl_tf models need beyond Keras' own saving.

* `load_model(path)`: `keras.saving.load_model` after registering mmtl_tf's
  layers, models, losses and metrics. `import mmtl_tf` alone registers
  nothing (it imports no TensorFlow), and Keras looks up a saved custom class
  only among registered ones, so a plain `keras.saving.load_model` needs
  `import mmtl_tf.models` first.
* `trainable_state(model)` / `restore_trainable_state(model, state)`: the
  trainable flag of a model and of every layer inside it. mmtl_tf's encoders
  and models rebuild their layers from their arguments when loaded, which
  would undo a `freeze`, `unfreeze` or `layer.trainable = ...` made after
  building; their configs carry this state and `rebuild` (their
  `from_config`) restores it.
"""

import importlib

# The modules whose import registers every serializable class of mmtl_tf.
_REGISTERING_MODULES = ("layers", "encoders", "losses", "metrics", "models")


def register_all():
    """Imports the modules that register mmtl_tf's Keras classes."""
    for name in _REGISTERING_MODULES:
        importlib.import_module(f"mmtl_tf.{name}")


def load_model(path, **kwargs):
    """`keras.saving.load_model(path, **kwargs)` with mmtl_tf's classes registered.

    Example:
        >>> model = mmtl_tf.load_model("runs/fusion/model.keras")  # doctest: +SKIP
    """
    register_all()
    import keras

    return keras.saving.load_model(path, **kwargs)


def _children(layer):
    return layer._flatten_layers(include_self=False, recursive=False)


def trainable_state(model):
    """{path: bool}: `model.trainable` (path `""`) and that of every layer
    below it (paths of layer names joined by `/`)."""
    state = {"": bool(model.trainable)}

    def walk(layer, prefix):
        for child in _children(layer):
            path = prefix + child.name
            state.setdefault(path, bool(child.trainable))
            walk(child, path + "/")

    walk(model, "")
    return state


def rebuild(cls, config, **replace):
    """`from_config` of a class whose `get_config` holds `"trainable_state"`:
    `cls(**config)` (with `replace`'s entries, e.g. a deserialized sub-model)
    and the trainable flags restored."""
    config = {**config, **replace}
    state = config.pop("trainable_state", None)
    return restore_trainable_state(cls(**config), state)


def restore_trainable_state(model, state):
    """Sets the flags recorded by `trainable_state`, outermost first (setting a
    layer's flag sets its sub-layers' too, so theirs are set after it).
    Paths that do not exist in `model` are ignored; returns `model`."""
    if not state:
        return model
    if "" in state:
        model.trainable = state[""]

    def walk(layer, prefix):
        for child in _children(layer):
            path = prefix + child.name
            if path in state:
                child.trainable = state[path]
            walk(child, path + "/")

    walk(model, "")
    return model
