"""Task `matching`: a matching network trained on N-way K-shot episodes of some
classes and tested on episodes of classes it never saw."""

import keras
import numpy as np
import tensorflow as tf

from mmtl_tf import runtime
from mmtl_tf.data.sampling import few_shot_episodes
from mmtl_tf.errors import DataError, raise_collected_problems
from mmtl_tf.export import export_matching_network
from mmtl_tf.models.matching_network import build_matching_network
from mmtl_tf.tasks import common, shared_space

NAME = "matching"


def split_classes(class_names, labels, config, need_train=True):
    """(train class ids, held-out class ids) from the recipe.

    `test_classes` (a list of names) fixes the held-out classes; otherwise
    `num_test_classes` are drawn with the seed among the classes that have
    enough examples for the largest evaluation episode. Either way the test
    episodes (`eval_way` classes, `max(eval_shots)` shots and `eval_queries`
    queries per class) must be possible: checked here, before training.
    With `need_train` (training, or evaluating the training classes), two
    or more classes must be left to train on.
    """
    counts = np.bincount(labels, minlength=len(class_names))
    way, queries = int(config["eval_way"]), int(config["eval_queries"])
    shots = max(int(k) for k in config["eval_shots"])
    need = shots + queries
    episodes = (f"{way}-way test episodes of up to {shots} shots and {queries} queries per "
                f"class (eval_way={way}, eval_shots={list(config['eval_shots'])}, "
                f"eval_queries={queries})")

    def per_class(ids):
        return ", ".join(f"{class_names[c]!r}: {counts[c]}" for c in ids)

    if config.get("test_classes"):
        unknown = [c for c in config["test_classes"] if c not in class_names]
        if unknown:
            raise ValueError(f"test_classes {unknown} are not classes of {config['data']} "
                             f"(classes: {', '.join(class_names)}).")
        test = [class_names.index(c) for c in config["test_classes"]]
        if len(test) < way:
            raise ValueError(f"test_classes names {len(test)} classes; {episodes} need at "
                             f"least {way}: name more or lower eval_way.")
        eligible = [c for c in test if counts[c] >= need]
        if len(eligible) < way:
            raise DataError(f"{config['data']}: {episodes} need {way} held-out classes with at "
                            f"least {need} examples; of test_classes only {len(eligible)} "
                            f"have (examples per class: {per_class(test)}).")
    else:
        n = int(config["num_test_classes"])
        if n < way:
            raise ValueError(f"num_test_classes={n} (--num-test-classes) is fewer than "
                             f"eval_way={way}: {episodes} need {way} held-out classes; hold "
                             f"out at least {way} or lower eval_way in a recipe file.")
        eligible = [c for c in range(len(class_names)) if counts[c] >= need]
        rng = np.random.default_rng(int(config["seed"]))
        if len(eligible) < n:
            raise DataError(f"{config['data']}: {n} held-out classes with at least {need} "
                            f"examples are needed (num_test_classes={n}; {episodes}); only "
                            f"{len(eligible)} have that many (examples per class: "
                            f"{per_class(range(len(class_names)))}).")
        test = sorted(rng.choice(eligible, n, replace=False).tolist())
    train = [c for c in range(len(class_names)) if c not in test and counts[c] >= 2]
    if len(train) < 2 and need_train:
        rest = [c for c in range(len(class_names)) if c not in test]
        how = ("name fewer test_classes" if config.get("test_classes")
               else f"hold out fewer (num_test_classes={len(test)}, --num-test-classes; at "
                    f"least eval_way={way})")
        raise DataError(
            f"{config['data']}: {len(class_names)} classes; {len(test)} are held out for "
            f"the test episodes, which leaves {len(train)} with at least 2 examples to train "
            f"on (examples per class: {per_class(rest) or 'none'}), and training (or evaluating "
            f"the training classes) needs 2 or more: {how}, or use data with more classes.")
    return train, test


def episode_dataset(images, labels, n_way, k_shot, n_query, num_episodes, batch, seed,
                    reshuffle=True, class_names=None):
    """Batched episodes `({"support", "support_labels", "queries"}, query_labels)`;
    `class_names` name the labels in error messages."""
    indices = few_shot_episodes(labels, n_way, k_shot, n_query, num_episodes, seed=seed,
                                reshuffle_each_iteration=reshuffle, class_names=class_names)
    pixels = tf.constant(images)

    def to_example(e):
        return ({"support": tf.gather(pixels, e["support_indices"]),
                 "support_labels": tf.one_hot(e["support_labels"], n_way),
                 "queries": tf.gather(pixels, e["query_indices"])}, e["query_labels"])

    return indices.map(to_example, num_parallel_calls=tf.data.AUTOTUNE).batch(batch) \
        .prefetch(tf.data.AUTOTUNE)


def _pixel_probabilities(x, scale=10.0):
    """The matching read-out on centred raw pixels: the untrained baseline."""
    def normalise(v):
        v = v.reshape(*v.shape[:2], -1).astype(np.float32)
        v = v - v.mean(axis=-1, keepdims=True)
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

    cosine = np.einsum("bqd,bsd->bqs", normalise(x["queries"]), normalise(x["support"]))
    weights = np.exp(scale * (cosine - cosine.max(axis=-1, keepdims=True)))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("bqs,bsn->bqn", weights, x["support_labels"])


def few_shot_accuracy(model, images, labels, config, k_shot, seed):
    """Mean accuracy, 95 % interval half-width and the raw-pixel accuracy over
    `eval_episodes` episodes of `eval_way` classes."""
    ds = episode_dataset(images, labels, int(config["eval_way"]), k_shot,
                         int(config["eval_queries"]), int(config["eval_episodes"]), 10, seed,
                         reshuffle=False)
    per_episode, pixels = [], []
    for x, y in ds.as_numpy_iterator():
        probabilities = np.asarray(model.predict_on_batch(x))
        per_episode.extend((probabilities.argmax(-1) == y).mean(axis=1))
        pixels.extend((_pixel_probabilities(x).argmax(-1) == y).mean(axis=1))
    per_episode = np.asarray(per_episode)
    # One episode has no spread: no interval (null in metrics.json), not NaN.
    interval = (float(1.96 * per_episode.std(ddof=1) / np.sqrt(len(per_episode)))
                if len(per_episode) > 1 else None)
    return float(per_episode.mean()), interval, float(np.mean(pixels))


def _pools(config, need_train=True):
    data = shared_space.load_labelled_images(
        config["data"], shared_space.available_splits(config["data"], int(config["seed"]),
                                      on_error=config.get("on_error", "raise")),
        shared_space.image_size(config), on_error=config.get("on_error", "raise"),
        seed=int(config["seed"]), cache=lambda split: common.dataset_cache(config, split))
    # Each file once with each label, also where several splits name it (one
    # split loads it once): the pools below take rows of several splits, and
    # no episode may hold one image as both a support and a query.
    distinct = shared_space.first_rows(data["paths"], data["labels"])
    labels, is_train = data["labels"], data["split"] == "train"
    train_classes, test_classes = split_classes(data["class_names"], labels[distinct], config,
                                                need_train)
    seen = np.isin(labels, train_classes)
    pools = {"train": seen & is_train, "validation": seen & ~is_train,
             "test": np.isin(labels, test_classes)}
    pools = {k: (data["images"][rows & distinct], labels[rows & distinct])
             for k, rows in pools.items()}
    names = data["class_names"]
    pools["class_names"] = names  # the labels' names, for messages
    return pools, [names[c] for c in train_classes], [names[c] for c in test_classes]


def _evaluate_pool(model, pool, config, way=None):
    way = int(way or config["eval_way"])
    config = {**config, "eval_way": way}
    results = {}
    for k in config["eval_shots"]:
        accuracy, interval, pixels = few_shot_accuracy(model, *pool, config, int(k),
                                                       int(config["seed"]) + 100 + int(k))
        results[f"{way}way_{k}shot_accuracy"] = accuracy
        results[f"{way}way_{k}shot_ci95"] = interval
        results[f"{way}way_{k}shot_pixels"] = pixels
    return results


@common.staged_run
def train(config, run_dir, verbose=1):
    """Episodic training on the training classes; few-shot accuracy on the held-out ones."""
    if config.get("batch_size") is not None:
        # (From --batch-size, a recipe file or the quickstart: recorded in
        # run.json and ignored.)
        raise ValueError(f"batch_size={config['batch_size']}: the matching network trains on "
                         "episodes, not batches of images; set episodes_per_batch (now "
                         f"{config.get('episodes_per_batch')}) in a recipe file instead.")
    common.start_run(run_dir, NAME, config)
    pools, train_names, test_names = _pools(config)
    train_way = min(int(config["train_way"]), len(train_names))
    seed = int(config["seed"])
    batch = int(config["episodes_per_batch"])
    per_epoch = int(config["episodes_per_epoch"])
    try:
        train_ds = episode_dataset(*pools["train"], train_way, int(config["train_shot"]),
                                   int(config["train_queries"]), per_epoch, batch, seed,
                                   class_names=pools["class_names"])
    except DataError as e:
        raise DataError(f"{config['data']}: the training classes' train split (train_way, "
                        f"train_shot, train_queries): {e}") from e
    try:
        val_ds = episode_dataset(*pools["validation"], train_way, int(config["train_shot"]),
                                 int(config["train_queries"]), max(batch, per_epoch // 4),
                                 batch, seed + 1, reshuffle=False)
    except DataError:
        val_ds = None  # too few held-back images of the training classes
    with runtime.get_strategy().scope():
        model = build_matching_network(shared_space.build_image_tower(config),
                                       projection_dim=config.get("projection_dim"))
        model.compile(optimizer=shared_space.optimizer(config),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=runtime.get_jit_compile())
    history, seconds, best_epoch = shared_space.fit_and_restore(
        model, train_ds, val_ds, config, run_dir, verbose)
    common.update_run(run_dir, train_classes=train_names, test_classes=test_names,
                      train_way=train_way)
    test = _evaluate_pool(model, pools["test"], config)
    metrics = {"test": test, "test_classes": test_names, "train_classes": train_names,
               "baselines": {"chance": 1.0 / int(config["eval_way"])},
               "params": int(model.count_params()), "train_seconds": seconds,
               "epochs": int(config["epochs"]), "best_epoch": best_epoch}
    return common.write_metrics(run_dir, metrics)


@common.evaluation(unsplit_rows=False)
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Few-shot accuracy on the held-out classes (`split="test"`) or on the
    training classes' images of the `"train"` or `"validation"` split, in
    episodes of `eval_way` classes or of all training classes if fewer.

    On other data, held-out classes are drawn anew among its classes (as in
    training: `num_test_classes`, the run's seed) and recorded with its
    figures; its rows that name no split are split 80/10/10 as in training."""
    info, model = common.load_run_model(run_dir, NAME)
    config = common.run_config(info, data, on_error)
    # The run's held-out classes; on other data, held-out classes drawn anew.
    config["test_classes"] = None if data else info["test_classes"]
    # The held-out classes' episodes need no training classes (other data
    # with as many classes as are held out).
    pools, train_names, test_names = _pools(config, need_train=split != "test")
    raise_collected_problems()  # bad rows and files named before the model runs
    pool, way = pools[split], None
    if split != "test":  # the training classes: fewer than eval_way (4 of the bundled 9)
        classes = len(np.unique(pool[1]))
        if classes < 2:
            raise DataError(f"{config['data']}: the {split!r} split has images of "
                            f"{classes} training class(es); episodes need 2 or more.")
        way = min(int(config["eval_way"]), classes)
    metrics = {split: _evaluate_pool(model, pool, config, way)}
    if data:  # the classes of the other data, not the run's (which printing read)
        metrics.update(test_classes=test_names, train_classes=train_names,
                       evaluated_on={"data": str(data), "seed": int(config["seed"])})
    return common.write_metrics(run_dir, metrics, data=data)


def export(run_dir, saved_model_dir):
    """SavedModel with `classify(support_image_bytes, support_labels, query_image_bytes)`."""
    info, model = common.load_run_model(run_dir, NAME)
    return export_matching_network(model, saved_model_dir,
                                   shared_space.image_size(info["config"]))


def format_metrics(metrics, split="test"):
    m = metrics[split]
    classes = metrics.get("test_classes") if split == "test" else None
    note = metrics.get("evaluated_on")
    lines = [(f"on {note.get('data')}: held-out classes drawn among its classes (seed "
              f"{note.get('seed')}); its rows that name no split are split 80/10/10 as in "
              "training")] if isinstance(note, dict) else []
    lines += [f"{split}: few-shot accuracy on "
              + (f"held-out classes {', '.join(classes)}" if classes else
                 f"the {split} images of the training classes"),
              f"{'episodes':18s}{'accuracy':>10s}{'± 95%':>8s}{'pixels':>9s}{'chance':>9s}"]
    for key in sorted(k for k in m if k.endswith("_accuracy")):
        name = key[:-len("_accuracy")]
        chance = 1.0 / int(name.split("way")[0])  # N-way episodes: 1 / N
        lines.append(f"{name.replace('way_', '-way ').replace('shot', '-shot'):18s}"
                     f"{m[key]:10.3f}{_interval(m.get(name + '_ci95')):>8s}"
                     f"{m[name + '_pixels']:9.3f}"
                     f"{'' if chance is None else f'{chance:.3f}':>9s}")
    return "\n".join(lines)


def summary(metrics):
    """One row per episode setting, against the raw-pixel matching read-out
    (the untrained baseline, as Siamese and triplet runs are shown against
    raw-pixel 1-NN; chance is in the metric's name): against chance alone a
    run below raw pixels looked like a success (a helper's 0.484 / 0.604
    against pixels' 0.572 / 0.684, shown only by `evaluate`)."""
    rows = []
    for key in sorted(k for k in metrics["test"] if k.endswith("_accuracy")):
        name = key[:-len("_accuracy")]
        rows.append({"model": "matching network (CNN, cosine attention)",
                     "metric": f"{name.replace('way_', '-way ').replace('shot', '-shot')} "
                               f"accuracy, held-out classes (chance "
                               f"{metrics['baselines']['chance']:.3f})",
                     "value": metrics["test"][key], "baseline": "raw-pixel matching",
                     "baseline_value": metrics["test"][f"{name}_pixels"],
                     "params": metrics["params"], "train_seconds": metrics["train_seconds"]})
    return rows


def _interval(value):
    return "n/a" if value is None else f"{value:.3f}"
