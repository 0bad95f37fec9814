"""mmtl_tf: multimodal and transfer learning with Keras 3 and TensorFlow.

Importing the package is cheap and has no side effects: TensorFlow and Keras are
imported only when a submodule that needs them is first used, e.g.
``mmtl_tf.models.build_fusion_classifier`` or ``mmtl_tf.data.make_image_text_dataset``.
So ``import mmtl_tf`` registers none of its Keras classes: load a saved model
with ``mmtl_tf.load_model(path)``, or ``import mmtl_tf.models`` before
``keras.saving.load_model``.
"""

import importlib

from mmtl_tf.errors import DataError, DataWarning, DownloadError

__version__ = "0.1.0"

_SUBMODULES = (
    "data", "layers", "encoders", "models", "losses", "metrics", "runtime",
    "training", "export", "tasks", "recipes", "saving",
)

__all__ = ["DataError", "DataWarning", "DownloadError", "__version__", "load_model",
           *_SUBMODULES]


def __getattr__(name):
    if name == "load_model":  # keras.saving.load_model with mmtl_tf's classes registered
        from mmtl_tf.saving import load_model

        return load_model
    if name in _SUBMODULES:
        module = importlib.import_module(f"mmtl_tf.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mmtl_tf' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
