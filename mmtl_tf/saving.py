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

import contextlib
import importlib

# The modules whose import registers every serializable class of mmtl_tf.
_REGISTERING_MODULES = ("layers", "encoders", "losses", "metrics", "models")


def register_all():
    """Imports the modules that register mmtl_tf's Keras classes."""
    for name in _REGISTERING_MODULES:
        importlib.import_module(f"mmtl_tf.{name}")


def load_model(path, **kwargs):
    """`keras.saving.load_model(path, **kwargs)` with mmtl_tf's classes
    registered, under the precision the file was saved with.

    A model saved under `mixed_float16` or `mixed_bfloat16` is loaded under
    that global dtype policy (then the program's own is restored): Keras
    rebuilds layers and the compiled optimizer under the global policy, so in
    a float32 program such a model came back partly float32 (other outputs),
    and its optimizer without the loss-scale wrapper ("Skipping variable
    loading for optimizer": the optimizer state was lost).

    Example:
        >>> model = mmtl_tf.load_model("runs/fusion/model.keras")  # doctest: +SKIP
    """
    register_all()
    import keras

    from mmtl_tf.files import user_path

    path = user_path(path)  # "~/runs/fusion/model.keras"
    with global_dtype_policy(saved_precision(path)):
        return keras.saving.load_model(path, **kwargs)


@contextlib.contextmanager
def global_dtype_policy(policy):
    """Within the block, Keras' global dtype policy is `policy` (any Keras
    policy name; None leaves it as it is); the previous one is restored after,
    also on an error. mmtl_tf's encoders build their layers under the global
    policy, so loading a model means building it under the policy it was
    saved with."""
    import keras

    previous = keras.config.dtype_policy()
    if policy is not None:
        keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def keras_archive_config(path):
    """The bytes of a `.keras` archive's config.json (the model's Keras
    config), or None where they cannot be read."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def saved_precision(path):
    """The dtype policy the layers of a `.keras` file were built under:
    `"mixed_float16"` or `"mixed_bfloat16"` if any layer has it, else
    `"float32"`; None when that cannot be told (not a `.keras` file this can
    read, or layers of both mixed policies)."""
    import json
    import os

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).endswith(".keras"):
        return None
    raw = keras_archive_config(path)
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except (AttributeError, ValueError):
        return None  # Keras' own load reports what is wrong with the file
    found = [p for p in ("mixed_float16", "mixed_bfloat16") if f'"{p}"' in text]
    if not found:
        return "float32"
    return found[0] if len(found) == 1 else None


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


def saved_state(layer):
    """The config entries of an mmtl_tf encoder or model that `rebuild`
    restores: the trainable flags (`trainable_state`) and the dtype policy
    its layers were built under (`build_policy`)."""
    return {"trainable_state": trainable_state(layer), "build_policy": layer.dtype_policy.name}


def rebuild(cls, config, **replace):
    """`from_config` of a class whose `get_config` holds `saved_state`:
    `cls(**config)` (with `replace`'s entries, e.g. a deserialized sub-model)
    built under the dtype policy it was saved with, and the trainable flags
    restored. (These classes build their layers under the global policy, so
    a mixed_float16 model loaded in a float32 program came back float32, with
    other outputs, and the other way round.) Configs saved before
    `build_policy` existed build under the global policy, as before."""
    config = {**config, **replace}
    state = config.pop("trainable_state", None)
    with global_dtype_policy(config.pop("build_policy", None)):
        model = cls(**config)
    return restore_trainable_state(model, state)


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
