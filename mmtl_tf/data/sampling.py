"""Index samplers in `tf.data` for metric and few-shot learning.

* `class_balanced_batches`: P classes × K examples per batch (so triplet
  mining always finds positives);
* `few_shot_episodes`: N-way K-shot episodes with query examples (matching
  networks);
* `random_pairs` / `random_triplets`: labelled pairs for a Siamese network
  and (anchor, positive, negative) triplets for a triplet network.

Each returns a `tf.data.Dataset` of int32 *indices* into the caller's
examples, drawn with stateless random ops from a seed: the same seed gives the
same batches on every run, and with `reshuffle_each_iteration=True` (the
default) each epoch draws new ones. `gather_rows` turns indices into
examples held in memory (images, token ids, audio features alike), inside the
pipeline.
"""

import math

import numpy as np
import tensorflow as tf

from mmtl_tf.errors import DataError


def _class_table(labels):
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one label per example (1-D); got shape {labels.shape}.")
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    return classes.tolist(), members  # Python values: messages show 3, not np.int32(3)


def _padded(members):
    width = max(len(m) for m in members)
    table = np.zeros((len(members), width), np.int32)
    for i, m in enumerate(members):
        table[i, :len(m)] = m
    return tf.constant(table), tf.constant([len(m) for m in members], tf.int32)


def _seeds(seed, count, reshuffle_each_iteration):
    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle_each_iteration)
    ds = ds.batch(2)
    return ds.take(count) if count is not None else ds


def _choose_classes(seed, num_classes, how_many):
    keys = tf.random.stateless_uniform([num_classes], seed)
    return tf.argsort(keys)[:how_many]


def _sample_members(seed, table, counts, rows, how_many):
    """`how_many` members of each class in `rows`: without replacement when the
    class is large enough, else with replacement."""
    seed_a, seed_b = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    width = tf.shape(table)[1]
    row_counts = tf.gather(counts, rows)
    keys = tf.random.stateless_uniform([tf.size(rows), width], seed_a)
    keys = tf.where(tf.range(width)[None, :] < row_counts[:, None], keys, 2.0)
    without = tf.argsort(keys, axis=1)[:, :how_many]
    if table.shape[1] is not None and table.shape[1] < how_many:
        without = tf.pad(without, [[0, 0], [0, how_many - table.shape[1]]])
    uniform = tf.random.stateless_uniform([tf.size(rows), how_many], seed_b)
    with_replacement = tf.cast(
        tf.floor(uniform * tf.cast(row_counts[:, None], tf.float32)), tf.int32)
    positions = tf.where(row_counts[:, None] >= how_many, without[:, :how_many],
                         with_replacement)
    return tf.gather(tf.gather(table, rows), positions, batch_dims=1)


def class_balanced_batches(labels, classes_per_batch, examples_per_class, num_batches=None,
                           seed=0, reshuffle_each_iteration=True, class_names=None):
    """Batches of P classes × K examples each, as index vectors (P·K,).

    Each batch picks `classes_per_batch` distinct classes at random and
    `examples_per_class` examples of each (without replacement; with
    replacement for a class that has fewer). Classes with a single example can
    never give a positive pair and are not drawn.

    Args:
        labels: sequence of N labels (ints or strings).
        classes_per_batch: int. P, at least 2.
        examples_per_class: int. K, at least 2.
        num_batches: int or None. Batches per epoch; None: ceil(N / (P·K)).
        seed: int. With TensorFlow's global seed (`tf.random.set_seed`,
            `keras.utils.set_random_seed`) it decides what is drawn, as for
            `tf.data.Dataset.shuffle(seed=...)`.
        reshuffle_each_iteration: bool. New batches each epoch.
        class_names: list of str or None. Names of integer labels (label i is
            `class_names[i]`), used only in error messages.

    Returns:
        `tf.data.Dataset` of int32 (P·K,): indices grouped by class.

    Raises:
        DataError: fewer than P classes have two or more examples.

    Example:
        >>> from mmtl_tf.data import class_balanced_batches
        >>> ds = class_balanced_batches([0, 0, 1, 1, 2, 2], 2, 2, num_batches=1)
        >>> next(iter(ds)).shape
        TensorShape([4])

    References:
        Hermans, Beyer and Leibe 2017 (P×K batches for batch-hard mining).
    """
    p, k = int(classes_per_batch), int(examples_per_class)
    if p < 2 or k < 2:
        raise ValueError("classes_per_batch and examples_per_class must be >= 2 (triplet "
                         f"mining needs positives and negatives); got {p} and {k}.")
    classes, members = _class_table(labels)
    eligible = [i for i, m in enumerate(members) if len(m) >= 2]
    if len(eligible) < p:
        named = [class_names[c] for c in classes] if class_names is not None else classes
        counts = ", ".join(f"{named[i]!r}: {len(m)}" for i, m in enumerate(members))
        raise DataError(f"class-balanced batches need {p} classes with at least 2 examples; "
                        f"only {len(eligible)} have (examples per class: {counts}).")
    table, counts = _padded([members[i] for i in eligible])
    if num_batches is None:
        num_batches = max(1, math.ceil(len(labels) / (p * k)))

    def make_batch(seed_pair):
        seed_a, seed_b = tf.unstack(tf.random.experimental.stateless_split(seed_pair, 2))
        rows = _choose_classes(seed_a, len(eligible), p)
        return tf.reshape(_sample_members(seed_b, table, counts, rows, k), [p * k])

    return _seeds(seed, int(num_batches), reshuffle_each_iteration).map(make_batch)


def few_shot_episodes(labels, n_way, k_shot, n_query, num_episodes=None, seed=0,
                      reshuffle_each_iteration=True, class_names=None):
    """N-way K-shot episodes: support and query indices with episode labels.

    Each episode picks `n_way` classes at random, then `k_shot + n_query`
    distinct examples of each: the first `k_shot` form the support set, the
    rest the queries. Episode labels are 0..n_way-1 in the order the classes
    were drawn (they say nothing about the original label).

    Args:
        labels: sequence of N labels.
        n_way: int. Classes per episode (≥ 2).
        k_shot: int. Support examples per class (≥ 1).
        n_query: int. Query examples per class (≥ 1).
        num_episodes: int or None. Episodes per epoch (None: endless).
        seed: int. With TensorFlow's global seed (`tf.random.set_seed`,
            `keras.utils.set_random_seed`) it decides what is drawn, as for
            `tf.data.Dataset.shuffle(seed=...)`.
        reshuffle_each_iteration: bool.
        class_names: list of str or None. Names of integer labels (label i is
            `class_names[i]`), used only in error messages.

    Returns:
        `tf.data.Dataset` of dicts: `support_indices` int32 (n_way·k_shot,),
        `support_labels` int32 (n_way·k_shot,), `query_indices` int32
        (n_way·n_query,), `query_labels` int32 (n_way·n_query,).

    Raises:
        DataError: fewer than `n_way` classes have `k_shot + n_query` examples.

    Example:
        >>> from mmtl_tf.data import few_shot_episodes
        >>> e = next(iter(few_shot_episodes([0, 0, 1, 1, 2, 2], 2, 1, 1, 1)))
        >>> e["support_labels"].numpy().tolist(), e["query_labels"].numpy().tolist()
        ([0, 1], [0, 1])

    References:
        Vinyals et al. 2016, "Matching Networks for One Shot Learning",
        section 2.2 (episodic training).
    """
    n_way, k_shot, n_query = int(n_way), int(k_shot), int(n_query)
    if n_way < 2 or k_shot < 1 or n_query < 1:
        raise ValueError(f"need n_way >= 2, k_shot >= 1 and n_query >= 1; got n_way={n_way}, "
                         f"k_shot={k_shot}, n_query={n_query}.")
    classes, members = _class_table(labels)
    need = k_shot + n_query
    eligible = [i for i, m in enumerate(members) if len(m) >= need]
    if len(eligible) < n_way:
        named = [class_names[c] for c in classes] if class_names is not None else classes
        counts = ", ".join(f"{named[i]!r}: {len(m)}" for i, m in enumerate(members))
        raise DataError(f"{n_way}-way {k_shot}-shot episodes with {n_query} queries need "
                        f"{n_way} classes with at least {need} examples; only "
                        f"{len(eligible)} have (examples per class: {counts}).")
    table, counts = _padded([members[i] for i in eligible])

    def make_episode(seed_pair):
        seed_a, seed_b = tf.unstack(tf.random.experimental.stateless_split(seed_pair, 2))
        rows = _choose_classes(seed_a, len(eligible), n_way)
        chosen = _sample_members(seed_b, table, counts, rows, need)       # (n_way, need)
        episode_labels = tf.repeat(tf.range(n_way, dtype=tf.int32)[:, None], need, axis=1)
        return {"support_indices": tf.reshape(chosen[:, :k_shot], [-1]),
                "support_labels": tf.reshape(episode_labels[:, :k_shot], [-1]),
                "query_indices": tf.reshape(chosen[:, k_shot:], [-1]),
                "query_labels": tf.reshape(episode_labels[:, k_shot:], [-1])}

    return _seeds(seed, num_episodes, reshuffle_each_iteration).map(make_episode)


def _pair_tables(labels, what):
    classes, members = _class_table(labels)
    if len(classes) < 2:
        raise DataError(f"{what} need at least 2 classes; got {len(classes)}.")
    eligible = [i for i, m in enumerate(members) if len(m) >= 2]
    if not eligible:
        raise DataError(f"{what} need a class with at least 2 examples; every class has one.")
    table, counts = _padded(members)
    return classes, members, eligible, table, counts


def _draw_pair(seed, table, counts, eligible, positive):
    """An anchor class from `eligible`, two distinct members; a negative class."""
    s = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    num_classes = tf.shape(counts)[0]
    cls = tf.gather(eligible, tf.random.stateless_uniform(
        [], s[0], 0, tf.size(eligible), dtype=tf.int32))
    count = counts[cls]
    first = tf.random.stateless_uniform([], s[1], 0, count, dtype=tf.int32)
    second = (first + tf.random.stateless_uniform([], s[2], 1, tf.maximum(count, 2),
                                                  dtype=tf.int32)) % count
    other = (cls + tf.random.stateless_uniform([], s[3], 1, num_classes, dtype=tf.int32)) \
        % num_classes
    other_member = tf.random.stateless_uniform(
        [], tf.random.experimental.stateless_fold_in(s[3], 7), 0, counts[other], dtype=tf.int32)
    anchor = table[cls, first]
    same = table[cls, second]
    different = table[other, other_member]
    return anchor, same, different


def random_pairs(labels, num_pairs, positive_fraction=0.5, seed=0,
                 reshuffle_each_iteration=True):
    """Labelled pairs for a Siamese network: `(i, j, similar)`.

    With probability `positive_fraction` j is another example of i's class
    (similar = 1), else an example of another class (similar = 0).

    Args:
        labels: sequence of N labels.
        num_pairs: int. Pairs per epoch.
        positive_fraction: float in (0, 1).
        seed: int. With TensorFlow's global seed (`tf.random.set_seed`,
            `keras.utils.set_random_seed`) it decides what is drawn, as for
            `tf.data.Dataset.shuffle(seed=...)`.
        reshuffle_each_iteration: bool.

    Returns:
        `tf.data.Dataset` of (int32 i, int32 j, int32 similar) scalars.

    Example:
        >>> from mmtl_tf.data import random_pairs
        >>> i, j, same = next(iter(random_pairs([0, 0, 1, 1], 1)))
        >>> int(same) in (0, 1)
        True

    References:
        Hadsell, Chopra and LeCun 2006 (pairs for the contrastive loss).
    """
    if not 0.0 < float(positive_fraction) < 1.0:
        raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}.")
    _, _, eligible, table, counts = _pair_tables(labels, "pairs")
    eligible = tf.constant(eligible, tf.int32)

    def make_pair(seed_pair):
        seed_a, seed_b = tf.unstack(tf.random.experimental.stateless_split(seed_pair, 2))
        anchor, same, different = _draw_pair(seed_a, table, counts, eligible, True)
        similar = tf.random.stateless_uniform([], seed_b) < positive_fraction
        return anchor, tf.where(similar, same, different), tf.cast(similar, tf.int32)

    return _seeds(seed, int(num_pairs), reshuffle_each_iteration).map(make_pair)


def random_triplets(labels, num_triplets, seed=0, reshuffle_each_iteration=True):
    """(anchor, positive, negative) index triplets for a triplet network.

    Args:
        labels: sequence of N labels.
        num_triplets: int. Triplets per epoch.
        seed: int. With TensorFlow's global seed (`tf.random.set_seed`,
            `keras.utils.set_random_seed`) it decides what is drawn, as for
            `tf.data.Dataset.shuffle(seed=...)`.
        reshuffle_each_iteration: bool.

    Returns:
        `tf.data.Dataset` of (int32 anchor, int32 positive, int32 negative).

    Example:
        >>> from mmtl_tf.data import random_triplets
        >>> a, p, n = next(iter(random_triplets([0, 0, 1, 1], 1)))
        >>> sorted([int(a), int(p)]) in ([0, 1], [2, 3])
        True

    References:
        Schroff et al. 2015 (FaceNet).
    """
    _, _, eligible, table, counts = _pair_tables(labels, "triplets")
    eligible = tf.constant(eligible, tf.int32)

    def make_triplet(seed_pair):
        return _draw_pair(seed_pair, table, counts, eligible, True)

    return _seeds(seed, int(num_triplets), reshuffle_each_iteration).map(make_triplet)


def gather_rows(arrays, indices):
    """Rows `indices` of a (nested) structure of in-memory arrays, in the graph.

    Args:
        arrays: tensor, array or nested dict/tuple of them, first axis = example.
        indices: int tensor of any shape.

    Returns:
        The same structure with each leaf `tf.gather(leaf, indices)`.

    Example:
        >>> import numpy as np, tensorflow as tf
        >>> from mmtl_tf.data import gather_rows
        >>> gather_rows({"x": tf.constant(np.arange(5))}, tf.constant([4, 0]))["x"].numpy().tolist()
        [4, 0]
    """
    return tf.nest.map_structure(lambda a: tf.gather(a, indices), arrays)
