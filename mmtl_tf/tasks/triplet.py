"""Task `triplet`: an image embedding trained with the triplet loss, triplets
mined inside class-balanced batches (or explicit random triplets)."""

import warnings

import tensorflow as tf

from mmtl_tf import runtime
from mmtl_tf.data.sampling import class_balanced_batches, random_triplets
from mmtl_tf.errors import DataError, DataWarning, raise_collected_problems
from mmtl_tf.export import export_image_embedding
from mmtl_tf.losses.triplet_loss import MININGS, TripletLoss
from mmtl_tf.models.embedding_model import build_embedding_model
from mmtl_tf.models.triplet_network import TripletNetwork
from mmtl_tf.tasks import common, metric_learning, shared_space

NAME = "triplet"
STRATEGIES = (*MININGS, "explicit")


def _balanced(split, config, seed, num_batches=None, reshuffle=True, class_names=None):
    indices = class_balanced_batches(split["labels"], int(config["classes_per_batch"]),
                                     int(config["examples_per_class"]), num_batches=num_batches,
                                     seed=seed, reshuffle_each_iteration=reshuffle,
                                     class_names=class_names)
    return metric_learning.index_dataset(
        indices, split, lambda t, idx: (tf.gather(t["images"], idx), tf.gather(t["labels"], idx)),
        batch_size=None)


def _triplets(split, batch_size, num, seed, reshuffle=True):
    indices = random_triplets(split["labels"], num, seed=seed, reshuffle_each_iteration=reshuffle)
    return metric_learning.index_dataset(
        indices, {"images": split["images"]},
        lambda t, a, p, n: {"anchor": tf.gather(t["images"], a),
                            "positive": tf.gather(t["images"], p),
                            "negative": tf.gather(t["images"], n)},
        batch_size)


def _embedding(model):
    return model.embedding if isinstance(model, TripletNetwork) else model


@common.staged_run
def train(config, run_dir, verbose=1):
    """Trains the embedding, evaluates category retrieval on the test split."""
    mining = config.get("mining", "semi_hard")
    if mining not in STRATEGIES:
        raise ValueError(f"mining={mining!r} is not allowed; use one of "
                         f"{', '.join(map(repr, STRATEGIES))}.")
    p, k = int(config["classes_per_batch"]), int(config["examples_per_class"])
    if mining != "explicit" and config.get("batch_size") is not None:
        # (From --batch-size, a recipe file or the quickstart: recorded in
        # run.json and ignored.)
        raise ValueError(
            f"batch_size={config['batch_size']}: with mining={mining!r} a batch is "
            f"classes_per_batch x examples_per_class images (here {p} x {k} = {p * k}); set "
            "those two instead (--classes-per-batch, --examples-per-class); batch_size is the "
            "batch of mining='explicit'.")
    common.start_run(run_dir, NAME, config)
    splits, class_names = metric_learning.load_splits(config)
    metric_learning.check_split(config, splits, "test", class_names, NAME)
    seed = int(config["seed"])
    margin = config.get("margin", 0.2)
    # Explicit triplets: batch_size if given, else as many as a P x K batch.
    batch = p * k
    triplet_batch = int(config.get("batch_size") or batch)
    steps = max(1, len(splits["train"]["labels"]) // batch)
    with runtime.get_strategy().scope():
        embedding = build_embedding_model(shared_space.build_image_tower(config),
                                          projection_dim=config.get("projection_dim"))
        if mining == "explicit":
            model = TripletNetwork(embedding, distance=config.get("distance", "l2"),
                                   margin=margin)
            model.compile(optimizer=shared_space.optimizer(config),
                          jit_compile=runtime.get_jit_compile())
        else:
            model = embedding
            model.compile(optimizer=shared_space.optimizer(config),
                          loss=TripletLoss(margin, mining, config.get("distance", "l2")),
                          jit_compile=runtime.get_jit_compile())
    if mining == "explicit":
        train_ds = _triplets(splits["train"], triplet_batch, steps * triplet_batch, seed)
    else:
        try:
            train_ds = _balanced(splits["train"], config, seed, num_batches=steps,
                                 class_names=class_names)
        except DataError as e:
            raise DataError(f"{config['data']}: the training split: {e}") from e
    val_ds, problem = None, None
    if not len(splits["validation"]["labels"]):
        problem = metric_learning.pair_problem(config, splits, "validation", class_names)
    else:
        try:
            if mining == "explicit":
                val_ds = _triplets(splits["validation"], triplet_batch, 4 * triplet_batch,
                                   seed + 1, reshuffle=False)
            else:
                val_ds = _balanced(splits["validation"], config, seed + 1, num_batches=4,
                                   reshuffle=False, class_names=class_names)
        except DataError as e:  # too small for triplets or P x K batches
            problem = f"{config['data']}: the validation split: {e}"
    if problem:
        warnings.warn(DataWarning(
            f"{problem.rstrip('.')}; no validation loss: the best epoch is the one with the "
            "lowest training loss."), stacklevel=2)
    history, seconds, best_epoch = shared_space.fit_and_restore(
        model, train_ds, val_ds, config, run_dir, verbose)
    retrieval, baselines = metric_learning.retrieval_report(_embedding(model), splits)
    common.update_run(run_dir, class_names=class_names)
    metrics = {"test": retrieval, "baselines": baselines, "params": int(model.count_params()),
               "train_seconds": seconds, "epochs": int(config["epochs"]),
               "best_epoch": best_epoch, "mining": mining}
    return common.write_metrics(run_dir, metrics)


@common.evaluation(unsplit_rows=False)
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Category retrieval of `split` images among the training images.

    Other data's rows that name no split are split 80/10/10 as in training:
    its training rows are the gallery, its `split` rows the queries."""
    info, model = common.load_run_model(run_dir, NAME)
    config = common.run_config(info, data, on_error)
    splits, class_names = metric_learning.load_splits(config)
    raise_collected_problems()  # bad rows and files named before the model runs
    metric_learning.check_split(config, splits, split, class_names, NAME, evaluating=True)
    retrieval, baselines = metric_learning.retrieval_report(
        _embedding(model), {"train": splits["train"], "test": splits[split]},
        leave_one_out=split == "train")
    return common.write_metrics(run_dir, {split: retrieval, "baselines": baselines,
                                          **metric_learning.other_data_note(config, splits, data)},
                                data=data)


def export(run_dir, saved_model_dir):
    """SavedModel with `encode_image(image_bytes)` → embeddings."""
    info, model = common.load_run_model(run_dir, NAME)
    return export_image_embedding(_embedding(model), saved_model_dir,
                                  shared_space.image_size(info["config"]))


def format_metrics(metrics, split="test"):
    return metric_learning.format_table(metrics, split)


def summary(metrics):
    return metric_learning.summary_rows(
        f"triplet embedding (CNN, {metrics.get('mining', 'semi_hard')} mining)", metrics)
