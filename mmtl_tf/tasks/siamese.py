"""Task `siamese`: a Siamese network trained with the contrastive loss on pairs
of labelled images (same category = similar)."""

import warnings

import numpy as np
import tensorflow as tf

from mmtl_tf import runtime
from mmtl_tf.data.sampling import random_pairs
from mmtl_tf.errors import DataWarning, raise_collected_problems
from mmtl_tf.export import export_image_embedding
from mmtl_tf.losses.contrastive_loss import ContrastiveLoss
from mmtl_tf.models.siamese_network import build_siamese_network
from mmtl_tf.tasks import common, metric_learning, shared_space

NAME = "siamese"


def _pairs(split, config, num_pairs, seed, reshuffle):
    indices = random_pairs(split["labels"], num_pairs, seed=seed,
                           reshuffle_each_iteration=reshuffle)
    return metric_learning.index_dataset(
        indices, {"images": split["images"]},
        lambda t, i, j, same: ({"left": tf.gather(t["images"], i),
                                "right": tf.gather(t["images"], j)}, same),
        int(config["batch_size"]))


def best_threshold(distances, same):
    """The distance threshold (same pair when distance <= threshold) with the
    highest accuracy on these pairs, halfway between the two observed
    distances it separates (the first such gap where several tie; below
    every distance, or above, at the ends). It was the observed distance
    itself, on the edge of the positives: with a validation split whose
    same-class pairs were all one pair, held-out pairs just above that one
    distance were called different (test pair accuracy at the majority
    answer, 0.523, where a threshold in the gap scored 0.81)."""
    distances = np.asarray(distances, np.float64)
    same = np.asarray(same, bool)
    # (Empty input failed with an IndexError, and NaN distances, a diverged
    # model's, gave a threshold as if they were the largest.)
    if distances.size == 0 or distances.shape != same.shape:
        raise ValueError(f"best_threshold needs one same/different answer per distance, at "
                         f"least one; got {distances.shape} distances and {same.shape} "
                         "answers.")
    if not np.isfinite(distances).all():
        raise ValueError(f"best_threshold: {int((~np.isfinite(distances)).sum())} of "
                         f"{distances.size} distances are not finite (a diverged model?).")
    values = np.unique(distances)
    # Cut k puts values[:k] on the "same" side: below all, between
    # neighbours, above all.
    cuts = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2,
                           [values[-1] + 1.0]])
    accuracy = [np.mean((distances <= c) == same) for c in cuts]
    return float(cuts[int(np.argmax(accuracy))])


def _pair_accuracy(model, split, config, seed, threshold=None):
    """Pair verification accuracy; the threshold maximises accuracy if not given."""
    ds = _pairs(split, config, int(config["eval_pairs"]), seed, False)
    distances, same = [], []
    for x, y in ds:
        distances.append(np.asarray(model.predict_on_batch(x)))
        same.append(np.asarray(y))
    # float64: a threshold halfway between two float32 distances compared in
    # float32 could round onto the upper one.
    distances = np.concatenate(distances).astype(np.float64)
    same = np.concatenate(same).astype(bool)
    if threshold is None:
        threshold = best_threshold(distances, same)
    return float(np.mean((distances <= threshold) == same)), threshold, float(np.mean(same))


@common.staged_run
def train(config, run_dir, verbose=1):
    """Trains on random pairs, picks the distance threshold on validation pairs,
    evaluates pair accuracy and category retrieval on the test split.

    A test split that cannot give both is a `DataError` before training. A
    validation split that cannot give same / different pairs (none, one
    class, one image per class) is a `DataWarning`: the threshold is then
    picked on training pairs (`threshold_split: "train"` in metrics.json and
    run.json, and in the table) and the best epoch by training loss.
    """
    common.start_run(run_dir, NAME, config)
    splits, class_names = metric_learning.load_splits(config)
    metric_learning.check_split(config, splits, "test", class_names, NAME, pairs=True)
    seed = int(config["seed"])
    train_ds = _pairs(splits["train"], config, int(config["pairs_per_epoch"]), seed, True)
    problem = metric_learning.pair_problem(config, splits, "validation", class_names)
    threshold_split = "train" if problem else "validation"
    if problem:
        warnings.warn(DataWarning(
            f"{problem[:-1]}; Siamese picks its distance threshold (same / different) on "
            "validation pairs: it is picked on training pairs instead, which favours the "
            "distances the model was trained on (threshold_split \"train\" in metrics.json), "
            "and the best epoch is the one with the lowest training loss."), stacklevel=2)
        val_ds = None
    else:
        val_ds = _pairs(splits["validation"], config, int(config["eval_pairs"]), seed + 1,
                        False)
    with runtime.get_strategy().scope():
        model = build_siamese_network(shared_space.build_image_tower(config),
                                      projection_dim=config.get("projection_dim"),
                                      distance=config.get("distance", "l2"))
        model.compile(optimizer=shared_space.optimizer(config),
                      loss=ContrastiveLoss(float(config.get("margin", 1.0))),
                      jit_compile=runtime.get_jit_compile())
    history, seconds, best_epoch = shared_space.fit_and_restore(
        model, train_ds, val_ds, config, run_dir, verbose)
    _, threshold, _ = _pair_accuracy(model, splits[threshold_split], config, seed + 1)
    accuracy, _, positive_fraction = _pair_accuracy(model, splits["test"], config, seed + 2,
                                                    threshold)
    retrieval, baselines = metric_learning.retrieval_report(model.get_layer("embedding"), splits)
    common.update_run(run_dir, class_names=class_names, threshold=threshold,
                      threshold_split=threshold_split)
    metrics = {"test": {"pair_accuracy": accuracy, **retrieval},
               "baselines": {**baselines,
                             "pair_majority": max(positive_fraction, 1 - positive_fraction)},
               "threshold": threshold, "threshold_split": threshold_split,
               "params": int(model.count_params()),
               "train_seconds": seconds, "epochs": int(config["epochs"]),
               "best_epoch": best_epoch}
    return common.write_metrics(run_dir, metrics)


@common.evaluation(unsplit_rows=False)
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Pair accuracy (saved threshold) and category retrieval of `split` against train.

    Other data's rows that name no split are split 80/10/10 as in training:
    its training rows are the gallery, its `split` rows the queries."""
    info, model = common.load_run_model(run_dir, NAME)
    config = common.run_config(info, data, on_error)
    splits, class_names = metric_learning.load_splits(config)
    raise_collected_problems()  # bad rows and files named before the model runs
    metric_learning.check_split(config, splits, split, class_names, NAME, pairs=True,
                                evaluating=True)
    accuracy, _, positive_fraction = _pair_accuracy(model, splits[split], config,
                                                    int(config["seed"]) + 2, info["threshold"])
    retrieval, baselines = metric_learning.retrieval_report(
        model.get_layer("embedding"), {"train": splits["train"], "test": splits[split]},
        leave_one_out=split == "train")
    baselines["pair_majority"] = max(positive_fraction, 1 - positive_fraction)
    return common.write_metrics(run_dir, {split: {"pair_accuracy": accuracy, **retrieval},
                                          "baselines": baselines,
                                          **metric_learning.other_data_note(config, splits, data)},
                                data=data)


def export(run_dir, saved_model_dir):
    """SavedModel with `encode_image(image_bytes)` → embeddings of the shared tower."""
    info, model = common.load_run_model(run_dir, NAME)
    return export_image_embedding(model.get_layer("embedding"), saved_model_dir,
                                  shared_space.image_size(info["config"]))


def format_metrics(metrics, split="test"):
    m, b = metrics[split], common.split_baselines(metrics, split)
    return metric_learning.format_table(
        metrics, split, [(f"pair accuracy (threshold from {_threshold_from(metrics)})",
                          m.get("pair_accuracy"), b.get("pair_majority"), None)])


def _threshold_from(metrics):
    """Where the run's distance threshold was picked: validation pairs, or
    training pairs where the validation split gave none."""
    return "training pairs" if metrics.get("threshold_split") == "train" else "validation"


def summary(metrics):
    rows = metric_learning.summary_rows("siamese network (CNN, contrastive loss)", metrics)
    rows.append({"model": "siamese network (CNN, contrastive loss)",
                 "metric": "test pair accuracy (same category?)"
                           + (", threshold from training pairs"
                              if metrics.get("threshold_split") == "train" else ""),
                 "value": metrics["test"]["pair_accuracy"], "baseline": "majority",
                 "baseline_value": metrics["baselines"]["pair_majority"],
                 "params": metrics["params"], "train_seconds": metrics["train_seconds"]})
    return rows
