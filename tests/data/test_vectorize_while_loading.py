"""`text.vectorize_while_loading`: the captions' vocabulary and token ids are
made on another thread while the files are checked, with the same result as
the sequential steps."""

import threading
import time
import warnings

import keras
import numpy as np
import pytest

from mmtl_tf import DataError, DataWarning
from mmtl_tf.data import text

CAPTIONS = ["a red apple", "a green pear", "one ripe plum", "red and green grapes"]
ADAPT = dict(vocab_size=50, sequence_length=4)


def _reference(captions, kept):
    # Keras' own adapt on the kept captions.
    kept_captions = [captions[i] for i in kept]
    layer = keras.layers.TextVectorization(
        max_tokens=ADAPT["vocab_size"], output_sequence_length=ADAPT["sequence_length"])
    layer.adapt(kept_captions)
    return layer.get_vocabulary(), layer(kept_captions).numpy()


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

    def recording_adapt(*args, **kwargs):
        threads.append(threading.current_thread().name)
        try:
            return adapt(*args, **kwargs)
        finally:
            adapted.set()

    def load():
        # Sequential steps would adapt only after this returns: the wait
        # would time out.
        assert adapted.wait(timeout=30), "the vocabulary was not adapted during load()"
        return "dataset", [0, 1, 2, 3]

    monkeypatch.setattr(text, "_adapt_on_list", recording_adapt)
    text.vectorize_while_loading(load, CAPTIONS, **ADAPT)
    assert threads == ["mmtl_tf-vectorize"]


def test_the_layer_is_named_on_the_calling_thread():
    # Keras numbers layer names per thread: one made on the helper's thread
    # would take a name that a layer of the caller already has. Run in a
    # new thread, whose numbering starts afresh, so that nothing else counts.
    names = []

    def body():
        names.append(keras.layers.TextVectorization().name)
        _, _, layer, _ = text.vectorize_while_loading(lambda: (None, [0, 1, 2, 3]), CAPTIONS,
                                                      **ADAPT)
        names.append(layer.name)

    caller = threading.Thread(target=body)
    caller.start()
    caller.join()
    assert names == ["text_vectorization", "text_vectorization_1"]


def test_a_failing_load_stops_the_text_side_at_its_next_batch(monkeypatch):
    monkeypatch.setattr(text, "_ADAPT_BATCH", 1)
    calls = []
    started = threading.Event()
    update_state = keras.layers.TextVectorization.update_state

    def slow_update_state(self, data):
        calls.append(1)
        started.set()
        time.sleep(0.005)  # 200 texts: about 1 s when not stopped
        return update_state(self, data)

    def load():
        assert started.wait(timeout=30)
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.layers.TextVectorization, "update_state", slow_update_state)
    with pytest.raises(KeyboardInterrupt):
        text.vectorize_while_loading(load, [f"caption {i}" for i in range(200)], **ADAPT)
    assert not _running_vectorize_threads()
    assert len(calls) < 50


def test_the_truncation_warning_follows_the_loads_and_counts_the_kept_rows():
    long_rows = ["one two three four five six", "two three four five six seven"]
    captions = ["short one", "short two"] + long_rows

    def load(kept):
        def run():
            warnings.warn(DataWarning("skipped rows"))
            return None, kept
        return run

    with pytest.warns(DataWarning) as caught:
        text.vectorize_while_loading(load([0, 1, 2, 3]), captions, **ADAPT)
    assert [str(w.message) for w in caught][0] == "skipped rows"
    assert "50% of the training texts (2 of 4) have more than 4 tokens" in str(caught[1].message)
    assert len(caught) == 2
    # The long rows dropped: adapted again on the short ones, no truncation.
    with pytest.warns(DataWarning) as caught:
        text.vectorize_while_loading(load([0, 1]), captions, **ADAPT)
    assert [str(w.message) for w in caught] == ["skipped rows"]


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


@pytest.mark.parametrize("length", [4, None])
def test_vectorised_in_parts_as_in_one_call(monkeypatch, length):
    # Without a fixed length each call pads to its own longest text: such a
    # vectorizer must see all the captions at once.
    monkeypatch.setattr(text, "_VECTORIZE_BATCH", 2)
    given = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=length)
    given.adapt(CAPTIONS)
    _, _, _, tokens = text.vectorize_while_loading(lambda: (None, [0, 1, 2, 3]), CAPTIONS,
                                                   given)
    np.testing.assert_array_equal(tokens.numpy(), given(CAPTIONS).numpy())

