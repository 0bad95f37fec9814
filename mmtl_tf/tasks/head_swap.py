"""Task `head-swap`: a pretrained image classifier with a new head (two-phase fine-tuning)."""

import os
import sys

import keras
import numpy as np

from mmtl_tf import runtime, training
from mmtl_tf.data.image_classification import make_image_classification_dataset
from mmtl_tf.errors import raise_collected_problems
from mmtl_tf.export import export_image_classifier
from mmtl_tf.metrics.average_precision import mean_average_precision
from mmtl_tf.metrics.box_iou import box_iou
from mmtl_tf.models.fine_tune import check_unfreeze, compile_for_task, fine_tune
from mmtl_tf.models.head_swap_classifier import build_head_swap_classifier
from mmtl_tf.models.localization_model import build_localization_model
from mmtl_tf.tasks import common

NAME = "head-swap"
MAIN_METRIC = {"multiclass": "accuracy", "multilabel": "mAP", "localization": "box_iou"}


def _image_size(config):
    size = config["image_size"]
    return [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]


def _weights(config):
    weights = config.get("weights")
    if isinstance(weights, str) and not weights.strip():
        # As in a recipe file or on the command line: "" meant random
        # initialisation when the config came from Python.
        raise ValueError(f"weights = {weights!r} is empty; give None (or 'none') for a random "
                         "initialisation, 'imagenet', or a weights file.")
    return None if weights in (None, "none", "None") else weights


def _datasets(config, splits=("train", "validation", "test"), class_names=None):
    out, records = {}, {}
    for split in splits:
        out[split], records[split] = make_image_classification_dataset(
            config["data"], split, task=config.get("target", "multiclass"),
            image_size=tuple(_image_size(config)), batch_size=int(config["batch_size"]),
            augment=bool(config.get("augment")) and split == "train", seed=int(config["seed"]),
            on_error=config.get("on_error", "raise"), return_records=True,
            class_names=class_names, cache=common.dataset_cache(config, split))
    return out, records


def _build(config, num_classes, weights):
    task = config.get("target", "multiclass")
    kwargs = dict(backbone=config["backbone"], num_classes=num_classes,
                  input_shape=(*_image_size(config), 3), weights=weights,
                  head_units=tuple(config["head_units"]), dropout=float(config["dropout"]),
                  trainable="frozen", pooling=config.get("pooling", "avg"))
    if task == "localization":
        # Global pooling discards where things are: the box head then did no
        # better than always the mean box (notebook 04); flattening keeps the
        # backbone's spatial grid.
        kwargs["pooling"] = config.get("localization_pooling", "flatten")
        return build_localization_model(**kwargs)
    return build_head_swap_classifier(task=task, **kwargs)


def head_learning_rate(config):
    """The head phase's learning rate: `learning_rate`, or for `--target
    localization` `localization_learning_rate` (1e-4 in the recipes; the
    command line's `--learning-rate` sets both): at 1e-3 the box head's
    outputs saturated (`mmtl_tf.models.fine_tune.head_learning_rate_for`)."""
    if config.get("target", "multiclass") == "localization":
        return float(config.get("localization_learning_rate", config["learning_rate"]))
    return float(config["learning_rate"])


def _train_phases(model, config, data, verbose, fine_tune_epochs=None):
    """Phase 1 (head), evaluation, phase 2 (fine-tuning); returns (history, test results)."""
    common_kwargs = dict(task=config.get("target", "multiclass"),
                         cache_features=bool(config.get("cache_features", True)),
                         batch_size=int(config["batch_size"]), seed=int(config["seed"]),
                         verbose=verbose)
    epochs = int(config.get("fine_tune_epochs", 0)) if fine_tune_epochs is None else fine_tune_epochs
    if epochs:
        check_unfreeze(model, config.get("unfreeze_layers"))
    head = fine_tune(model, data["train"], data["validation"], head_epochs=int(config["epochs"]),
                     fine_tune_epochs=0, head_learning_rate=head_learning_rate(config),
                     **common_kwargs)
    results = {"head": model.evaluate(data["test"], verbose=0, return_dict=True)}
    tuned = None
    if epochs:
        tuned = fine_tune(model, data["train"], data["validation"], head_epochs=0,
                          fine_tune_epochs=epochs,
                          fine_tune_learning_rate=float(config["fine_tune_learning_rate"]),
                          unfreeze_layers=config.get("unfreeze_layers"), **common_kwargs)
        results["fine_tune"] = model.evaluate(data["test"], verbose=0, return_dict=True)
    history = {k: list(v) for k, v in head["history"].items()}
    if tuned:
        for k, v in tuned["history"].items():
            history.setdefault(k, [float("nan")] * head["head_epochs"])
            history[k] += v
    seconds = {k: head["seconds"][k] + (tuned["seconds"][k] if tuned else 0.0)
               for k in head["seconds"]}
    return history, results, seconds, (tuned or {}).get("unfrozen", [])


def _baseline(task, records):
    """A data-only baseline on the test split (no model)."""
    train, test = records["train"], records["test"]
    if task == "multiclass":
        return "majority class", training.majority_class_accuracy(train.label_ids(),
                                                                  test.label_ids())
    if task == "multilabel":
        prevalence = train.targets("multilabel").mean(axis=0)
        truth = test.targets("multilabel")
        scores = np.broadcast_to(prevalence, truth.shape)
        return "class frequencies", float(mean_average_precision(truth, scores))
    mean_box = train.targets("localization")["box"].mean(axis=0)
    truth = test.targets("localization")["box"]
    return "mean training box", float(np.mean(box_iou(truth, np.broadcast_to(mean_box, truth.shape))))


def _say_unused_settings(config):
    """One line on stderr per setting that this run cannot use (it was
    recorded in run.json and did nothing, without a word): `augment` when
    no phase sees images (the head trains on cached features and there is no
    fine-tuning), `unfreeze_layers` without fine-tuning."""
    tuning = int(config.get("fine_tune_epochs", 0)) > 0
    unused = []
    if config.get("augment") and not tuning and config.get("cache_features", True):
        unused.append("augment (--augment) has no effect: the head trains on cached features "
                      "and --fine-tune-epochs is 0; give --fine-tune-epochs N, or "
                      "--no-cache-features to augment the head's training")
    if config.get("unfreeze_layers") is not None and not tuning:
        unused.append("unfreeze_layers (--unfreeze-layers) has no effect: --fine-tune-epochs "
                      "is 0")
    for line in unused:
        print(f"{NAME}: warning: {line}.", file=sys.stderr, flush=True)


def _floats(results):
    return {k: float(v) for k, v in results.items()}


@common.staged_run
def train(config, run_dir, verbose=1):
    """Trains (head, then fine-tuning), evaluates on the test split, writes the run folder."""
    common.start_run(run_dir, NAME, config)
    task = config.get("target", "multiclass")
    weights = _weights(config)
    if weights == "imagenet" and config["backbone"] == "efficientnet_lite0":
        from mmtl_tf.encoders.efficientnet_lite import efficientnet_lite0_imagenet_weights

        efficientnet_lite0_imagenet_weights(verbose=True)  # says so when converting
    _say_unused_settings(config)
    data, records = _datasets(config)
    class_names = records["train"].class_names
    with runtime.get_strategy().scope():
        model = _build(config, len(class_names), weights)
    history, results, seconds, unfrozen = _train_phases(model, config, data, verbose)
    training.save_model_atomic(model, os.path.join(run_dir, "model.keras"))
    training.atomic_write_json(history, os.path.join(run_dir, "history.json"))
    training.plot_curves(history, os.path.join(run_dir, "curves.png"),
                         title=f"{NAME}: {config['backbone']} ({weights or 'random init'}); "
                               f"fine-tuning from epoch {int(config['epochs']) + 1}")
    common.update_run(run_dir, class_names=class_names)
    final = results.get("fine_tune", results["head"])
    baseline_name, baseline_value = _baseline(task, records)
    metrics = {
        "test": common.row_figures(final, len(records["test"])),
        "test_after_head": _floats(results["head"]),
        "baselines": {baseline_name.replace(" ", "_"): baseline_value},
        "params": int(model.count_params()),
        "train_seconds": float(sum(seconds.values())),
        "seconds": seconds,
        "epochs": int(config["epochs"]),
        "fine_tune_epochs": int(config.get("fine_tune_epochs", 0)),
        "unfrozen_layers": len(unfrozen),
        "task": task,
        "backbone": config["backbone"],
        "weights": weights,
    }
    if config.get("compare_scratch") and weights is not None:
        if verbose:
            print(f"{NAME}: baseline — the same model from random initialisation, same head "
                  "budget", file=sys.stderr, flush=True)
        keras.utils.set_random_seed(int(config["seed"]))
        with runtime.get_strategy().scope():
            scratch = _build(config, len(class_names), None)
        _, scratch_results, _, _ = _train_phases(scratch, config, data, verbose=0,
                                                 fine_tune_epochs=0)
        metrics["baselines"]["random_init_same_budget"] = float(
            scratch_results["head"][MAIN_METRIC[task]])
    return common.write_metrics(run_dir, metrics)


@common.evaluation
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Re-evaluates the saved model on a split; updates metrics.json."""
    info, model = common.load_run_model(run_dir, NAME)
    config = common.run_config(info, data, on_error)
    # Targets index the run's classes, also on other data.
    datasets, records = _datasets(config, splits=(split,), class_names=info["class_names"])
    raise_collected_problems()  # bad rows and files named before the model runs
    target = config.get("target", "multiclass")
    compile_for_task(model, target, jit_compile=False)
    results = model.evaluate(datasets[split], verbose=verbose, return_dict=True)
    if target == "multiclass":
        return common.write_metrics(run_dir, common.scored_rows(split, results, records[split]),
                                    data=data)
    figures = {split: common.row_figures(results, len(records[split])),
               "baselines": _constant_answer(target, records[split])}
    return common.write_metrics(run_dir, figures, data=data)


def _constant_answer(task, records):
    """What one answer for every image scores on these rows, for an
    evaluation's baseline line (only multi-class evaluations had one):
    multi-label, the same score for every class (mAP = the mean share of
    positives, `constant_scores_map`); localization, the mean box of these
    rows (`mean_box_iou`)."""
    if task == "multilabel":
        truth = records.targets("multilabel")
        return {"constant_scores_map": float(mean_average_precision(truth,
                                                                    np.zeros_like(truth)))}
    truth = records.targets("localization")["box"]
    mean_box = np.broadcast_to(truth.mean(axis=0), truth.shape)
    return {"mean_box_iou": float(np.mean(box_iou(truth, mean_box)))}


def export(run_dir, saved_model_dir):
    """Writes a SavedModel whose `serving_default` takes encoded image bytes."""
    info, model = common.load_run_model(run_dir, NAME)
    # (The crop follows the task: whole images for localization.)
    return export_image_classifier(model, saved_model_dir, _image_size(info["config"]),
                                   class_names=info["class_names"],
                                   task=info["config"].get("target", "multiclass"))


def summary(metrics):
    task = metrics.get("task", "multiclass")
    key = MAIN_METRIC[task]
    weights = metrics.get("weights") or "random init"
    model = f"head-swap ({metrics.get('backbone')}, {weights})"
    metric = {"multiclass": "test accuracy", "multilabel": "test mAP",
              "localization": "test mean box IoU"}[task]
    rows = []
    for name, value in metrics["baselines"].items():
        rows.append({"model": model, "metric": metric, "value": metrics["test"][key],
                     "baseline": name.replace("_", " "), "baseline_value": value,
                     "params": metrics["params"], "train_seconds": metrics["train_seconds"]})
    return rows
