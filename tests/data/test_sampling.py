import numpy as np
import pytest
import tensorflow as tf

from mmtl_tf import DataError
from mmtl_tf.data import (class_balanced_batches, few_shot_episodes, gather_rows, random_pairs,
                          random_triplets)

LABELS = np.repeat(np.arange(6), [5, 4, 3, 2, 1, 7])   # class 4 has one example


def test_class_balanced_batches_have_p_classes_times_k():
    batches = [b.numpy() for b in class_balanced_batches(LABELS, 3, 4, num_batches=20, seed=1)]
    assert len(batches) == 20
    for batch in batches:
        classes = LABELS[batch].reshape(3, 4)
        assert len(set(classes[:, 0])) == 3                      # P distinct classes
        assert (classes == classes[:, :1]).all()                 # K of each, grouped
        assert 4 not in classes                                  # singletons never drawn
        for row, cls in zip(batch.reshape(3, 4), classes[:, 0]):
            if np.sum(LABELS == cls) >= 4:
                assert len(set(row)) == 4                        # without replacement
    # Every eligible class shows up; the seed fixes the sequence; epochs differ.
    assert set(np.concatenate([LABELS[b] for b in batches])) == {0, 1, 2, 3, 5}
    ds = class_balanced_batches(LABELS, 3, 4, num_batches=3, seed=1)
    first, second = [b.numpy().tolist() for b in ds], [b.numpy().tolist() for b in ds]
    assert first != second
    again = [b.numpy().tolist() for b in class_balanced_batches(LABELS, 3, 4, num_batches=3,
                                                                seed=1)]
    assert again == first
    fixed = class_balanced_batches(LABELS, 3, 4, num_batches=3, seed=1,
                                   reshuffle_each_iteration=False)
    assert [b.numpy().tolist() for b in fixed] == [b.numpy().tolist() for b in fixed]


def test_class_balanced_errors():
    with pytest.raises(DataError, match="need 3 classes with at least 2 examples; only 2"):
        class_balanced_batches([0, 0, 1, 1, 2], 3, 2)
    with pytest.raises(ValueError, match="must be >= 2"):
        class_balanced_batches(LABELS, 1, 4)


def test_few_shot_episodes_are_disjoint_and_consistent():
    episodes = list(few_shot_episodes(LABELS, n_way=3, k_shot=2, n_query=1, num_episodes=25,
                                      seed=3))
    assert len(episodes) == 25
    for e in episodes:
        support, query = e["support_indices"].numpy(), e["query_indices"].numpy()
        assert len(support) == 6 and len(query) == 3
        assert not set(support) & set(query)
        s_labels, q_labels = e["support_labels"].numpy(), e["query_labels"].numpy()
        assert s_labels.tolist() == [0, 0, 1, 1, 2, 2] and q_labels.tolist() == [0, 1, 2]
        # Episode label c always means the same original class within an episode.
        for c in range(3):
            originals = set(LABELS[support[s_labels == c]]) | set(LABELS[query[q_labels == c]])
            assert len(originals) == 1
        assert len(set(LABELS[support])) == 3
        assert not set(LABELS[support]) & {3, 4}                # too small for 2 + 1


def test_few_shot_errors():
    with pytest.raises(DataError, match=r"6-way 1-shot episodes with 1 queries need 6 classes "
                                        r"with at least 2 examples; only 5"):
        few_shot_episodes(LABELS, 6, 1, 1)
    with pytest.raises(ValueError, match="n_way >= 2"):
        few_shot_episodes(LABELS, 1, 1, 1)


def test_few_shot_errors_name_the_classes():
    # The message listed label indices (0: 5, 1: 1) where the names were known.
    with pytest.raises(DataError, match=r"'cat': 5, 'dog': 1\)"):
        few_shot_episodes([0] * 5 + [1], 2, 1, 1, class_names=["cat", "dog"])


def test_random_pairs_and_triplets():
    pairs = [tuple(int(t) for t in p) for p in random_pairs(LABELS, 300, seed=0)]
    similar = [s for _, _, s in pairs]
    assert 0.35 < np.mean(similar) < 0.65
    for i, j, same in pairs:
        assert i != j
        assert (LABELS[i] == LABELS[j]) == bool(same)
    for a, p, n in random_triplets(LABELS, 100, seed=0):
        a, p, n = int(a), int(p), int(n)
        assert a != p and LABELS[a] == LABELS[p] and LABELS[n] != LABELS[a]
    with pytest.raises(DataError, match="need at least 2 classes"):
        random_pairs([0, 0, 0], 4)
    with pytest.raises(ValueError, match="positive_fraction"):
        random_pairs(LABELS, 4, positive_fraction=1.0)


def test_gather_rows_in_a_pipeline():
    arrays = {"x": tf.constant(np.arange(10) * 10), "y": tf.constant(np.arange(10))}
    ds = class_balanced_batches(LABELS[:10], 2, 2, num_batches=2).map(
        lambda idx: gather_rows(arrays, idx))
    for batch in ds:
        np.testing.assert_array_equal(batch["x"].numpy(), batch["y"].numpy() * 10)



def test_too_few_classes_are_named_not_numpy_reprs():
    labels = np.array([0, 0, 1, 2], np.int32)
    with pytest.raises(DataError, match=r"'cat': 2, 'dog': 1, 'eel': 1\)"):
        class_balanced_batches(labels, 3, 2, class_names=["cat", "dog", "eel"])
    with pytest.raises(DataError, match=r"\(examples per class: 0: 2, 1: 1, 2: 1\)"):
        class_balanced_batches(labels, 3, 2)  # was np.int32(0): 2, ...
