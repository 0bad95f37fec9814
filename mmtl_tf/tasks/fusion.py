"""Task `fusion`: the image-text fusion classifier on image-caption-label data."""

import os

import numpy as np

from mmtl_tf import runtime, training
from mmtl_tf.data.pairs import make_image_text_dataset
from mmtl_tf.data.text import load_text_vectorizer, save_text_vectorizer
from mmtl_tf.errors import raise_collected_problems
from mmtl_tf.export import export_image_text_classifier
from mmtl_tf.models.fusion_classifier import build_fusion_classifier
from mmtl_tf.tasks import common

NAME = "fusion"
MODEL_KEYS = ("vocab_size", "sequence_length", "embedding_dim", "lstm_units",
              "conv_filters", "image_pooling", "hidden_units", "dropout")


def _image_size(config):
    size = config["image_size"]
    return [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]


def _build(config, num_classes):
    """The run's model. The bundled recipe's `embedding_dim` is null: the
    builder's default width for the pooling (the document's 128 for
    "flatten", 64 otherwise)."""
    return build_fusion_classifier(image_shape=(*_image_size(config), 3),
                                   num_classes=num_classes,
                                   **{k: config[k] for k in MODEL_KEYS})


def _datasets(config, vectorizer, splits=("train", "validation", "test"), class_names=None):
    """The batched datasets of `splits`, in order. With `vectorizer` None the
    first split's dataset (the training split's: put it first) adapts one on
    the rows it keeps (after its image files are checked) with the recipe's
    vocab_size, sequence_length and remove_stopwords, and the other splits
    use it (`data[split].text_vectorizer`)."""
    common_kwargs = dict(image_size=tuple(_image_size(config)),
                         batch_size=int(config["batch_size"]), seed=int(config["seed"]),
                         on_error=config.get("on_error", "raise"), class_names=class_names)
    if vectorizer is None:
        common_kwargs.update(vocab_size=int(config["vocab_size"]),
                             sequence_length=int(config["sequence_length"]),
                             remove_stopwords=bool(config.get("remove_stopwords")))
    data = {}
    for s in splits:
        data[s] = make_image_text_dataset(
            config["data"], s, text_vectorizer=vectorizer,
            augment=bool(config.get("augment")) and s == "train",
            cache=common.dataset_cache(config, s), **common_kwargs)
        vectorizer = data[s].text_vectorizer
    return data


@common.staged_run
def train(config, run_dir, verbose=1):
    """Trains, evaluates on the test split and writes the run folder."""
    common.start_run(run_dir, NAME, config)
    # The training dataset adapts the vocabulary on the rows it keeps: rows
    # skipped for a bad image (on_error="skip") do not shape it. Classes and
    # the majority baseline come from the rows the datasets keep, split with
    # the recipe's seed (records read here with the default seed were another
    # split of a captions file without a split column).
    data = _datasets(config, None)
    train_records, test_records = data["train"].records, data["test"].records
    save_text_vectorizer(data["train"].text_vectorizer,
                         os.path.join(run_dir, "text_vectorizer.json"))
    num_classes = len(train_records.class_names)
    with runtime.get_strategy().scope():
        model = _build(config, num_classes)
        training.compile_classifier(model, num_classes, float(config["learning_rate"]))
    history, seconds = training.fit(model, data["train"], data["validation"],
                                    epochs=int(config["epochs"]), run_dir=run_dir, backup=False,
                                    verbose=verbose)
    model.load_weights(os.path.join(run_dir, "best.keras"))
    training.save_model_atomic(model, os.path.join(run_dir, "model.keras"))
    training.atomic_write_json(history, os.path.join(run_dir, "history.json"))
    training.plot_curves(history, os.path.join(run_dir, "curves.png"),
                         title=f"{NAME}: {config['data']}")
    common.update_run(run_dir, class_names=train_records.class_names)
    results = model.evaluate(data["test"], verbose=0, return_dict=True)
    metrics = {
        "test": common.row_figures(results, len(test_records)),
        "baselines": {"majority_class_accuracy": training.majority_class_accuracy(
            train_records.label_ids(), test_records.label_ids())},
        "params": int(model.count_params()),
        "train_seconds": seconds,
        "epochs": int(config["epochs"]),
        "best_epoch": int(np.argmin(history["val_loss"])) + 1,
    }
    return common.write_metrics(run_dir, metrics)


def _load(run_dir):
    info, model = common.load_run_model(run_dir, NAME)
    vectorizer = load_text_vectorizer(common.require_file(run_dir, "text_vectorizer.json"))
    common.check_run_parts(run_dir, model, ("image", "text"), vectorizer, info["class_names"])
    return info, model, vectorizer


@common.evaluation
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Re-evaluates the saved model on a split; updates metrics.json."""
    info, model, vectorizer = _load(run_dir)
    config = common.run_config(info, data, on_error)
    # Label ids index the run's classes, also on other data.
    ds = _datasets(config, vectorizer, splits=(split,), class_names=info["class_names"])[split]
    raise_collected_problems()  # bad rows and files named before the model runs
    num_classes = len(info["class_names"])
    training.compile_classifier(model, num_classes, jit_compile=False)
    results = model.evaluate(ds, verbose=verbose, return_dict=True)
    return common.write_metrics(run_dir, common.scored_rows(split, results, ds.records),
                                data=data)


def export(run_dir, saved_model_dir):
    """Writes a SavedModel serving raw image bytes + raw captions."""
    info, model, vectorizer = _load(run_dir)
    return export_image_text_classifier(
        model, vectorizer, saved_model_dir, image_size=_image_size(info["config"]),
        class_names=info["class_names"])


def summary(metrics):
    return [{"model": "fusion (CNN + LSTM)", "metric": "test accuracy",
             "value": metrics["test"]["accuracy"],
             "baseline": "majority class",
             "baseline_value": metrics["baselines"]["majority_class_accuracy"],
             "params": metrics["params"], "train_seconds": metrics["train_seconds"]}]
