"""`text.vectorize_while_loading`: the captions' vocabulary and token ids are
made on another thread while the files are checked, with the same result as
the sequential steps."""

import threading

import keras
import numpy as np
import pytest

from mmtl_tf import DataError
from mmtl_tf.data import text

CAPTIONS = ["a red apple", "a green pear", "one ripe plum", "red and green grapes"]
ADAPT = dict(vocab_size=50, sequence_length=4)


def _reference(captions, kept):
    kept_captions = [captions[i] for i in kept]
    layer = text.make_text_vectorizer(kept_captions, **ADAPT)
    return layer.get_vocabulary(), text.vectorize(layer, kept_captions).numpy()


@pytest.mark.parametrize("kept", [[0, 1, 2, 3], [0, 1, 3]])
def test_same_vocabulary_and_tokens_as_the_sequential_steps(kept):
    ds, got_kept, layer, tokens = text.vectorize_while_loading(
        lambda: ("dataset", kept), CAPTIONS, **ADAPT)
    vocabulary, expected = _reference(CAPTIONS, kept)
    assert (ds, got_kept) == ("dataset", kept)
    # "plum" is only in the dropped row: it must not be in the vocabulary.
    assert layer.get_vocabulary() == vocabulary
    assert ("plum" in vocabulary) == (2 in kept)
    np.testing.assert_array_equal(tokens.numpy(), expected)


def test_a_given_or_training_vocabulary_is_kept_and_the_kept_rows_vectorised():
    train = ["ripe plum", "green pear", "green apple"]
    _, _, layer, tokens = text.vectorize_while_loading(
        lambda: (None, [1, 2]), CAPTIONS, train_captions=train, **ADAPT)
    assert "plum" in layer.get_vocabulary() and "red" not in layer.get_vocabulary()
    np.testing.assert_array_equal(tokens.numpy(),
                                  text.vectorize(layer, CAPTIONS[1:3]).numpy())
    given = text.make_text_vectorizer(train, **ADAPT)
    _, _, same, tokens = text.vectorize_while_loading(lambda: (None, [3]), CAPTIONS, given)
    assert same is given
    np.testing.assert_array_equal(tokens.numpy(), text.vectorize(given, CAPTIONS[3:]).numpy())


def test_the_text_side_runs_while_the_files_load(monkeypatch):
    adapted = threading.Event()
    threads = []
    adapt = text._adapt_on_list

    def recording_adapt(layer, texts):
        threads.append(threading.current_thread().name)
        lengths = adapt(layer, texts)
        adapted.set()
        return lengths

    def load():
        # Sequential steps would adapt only after this returns: the wait
        # would time out.
        assert adapted.wait(timeout=30), "the vocabulary was not adapted during load()"
        return "dataset", [0, 1, 2, 3]

    monkeypatch.setattr(text, "_adapt_on_list", recording_adapt)
    text.vectorize_while_loading(load, CAPTIONS, **ADAPT)
    assert threads == ["mmtl_tf-vectorize"]


def test_the_layer_is_named_on_the_calling_thread():
    # Keras numbers layer names per thread: one made on the new thread would
    # take a name that a layer of the caller already has.
    keras.utils.clear_session()
    before = keras.layers.TextVectorization()
    _, _, layer, _ = text.vectorize_while_loading(lambda: (None, [0, 1, 2, 3]), CAPTIONS,
                                                  **ADAPT)
    assert layer.name != before.name


def _running_vectorize_threads():
    return [t for t in threading.enumerate() if t.name == "mmtl_tf-vectorize"]


def test_an_error_of_the_load_wins_and_the_thread_has_ended():
    def load():
        raise DataError("row 3: cannot decode image")

    # A bare string instead of a list of captions fails on the text side too.
    with pytest.raises(DataError, match="row 3: cannot decode image"):
        text.vectorize_while_loading(load, "one caption", train_captions=["a b"], **ADAPT)
    assert not _running_vectorize_threads()


def test_an_error_of_the_text_side_is_raised_after_the_load():
    loaded = []
    given = text.make_text_vectorizer(["a b"], **ADAPT)
    with pytest.raises(ValueError, match="single string"):
        text.vectorize_while_loading(lambda: loaded.append(1) or (None, [0]),
                                     "one caption", given)
    assert loaded == [1]
    assert not _running_vectorize_threads()
