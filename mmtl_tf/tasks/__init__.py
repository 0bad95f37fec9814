"""Reference tasks behind `mmtl-tf train|evaluate|export|quickstart`.

`TASKS` describes each task without importing TensorFlow (so `mmtl-tf --help` is
fast): its help line, recipe, module and task-specific command-line options.
Each task module defines:

    train(config, run_dir, verbose) -> metrics dict (writes the run folder)
    evaluate(run_dir, split, verbose, data) -> metrics dict
    export(run_dir, saved_model_dir) -> path
    summary(metrics) -> list of quickstart-table rows (dicts)
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task as the CLI sees it."""

    name: str
    help: str
    recipe: str
    module: str
    options: tuple = ()
    in_quickstart: bool = True


def _opt(*flags, **kwargs):
    return (flags, kwargs)


_BOOL = {"action": "store_const", "const": True}

TASKS = {
    "fusion": TaskSpec(
        name="fusion",
        help="image-text fusion classifier (CNN image branch + Embedding/LSTM "
             "text branch, concatenated); data: image files + captions with labels",
        recipe="fusion",
        module="mmtl_tf.tasks.fusion",
        options=(
            _opt("--image-pooling", choices=["avg", "max", "flatten"],
                 help="image feature: global average/max pooling, or the source "
                      "document's Flatten (51 M parameters at 224 px)"),
            _opt("--image-size", type=int, metavar="PIXELS",
                 help="square image side the model takes"),
            _opt("--vocab-size", type=int, help="text vocabulary size"),
            _opt("--sequence-length", type=int, help="token ids per caption"),
            _opt("--dropout", type=float, help="dropout after the fusion layer"),
            _opt("--remove-stopwords", help="drop English stop words", **_BOOL),
            _opt("--augment", help="random flip/zoom/brightness/contrast", **_BOOL),
        ),
    ),
}


def names():
    """Task names in quickstart order."""
    return list(TASKS)


def get_task(name):
    """Imports and returns a task module by name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}.")
    return importlib.import_module(TASKS[name].module)
