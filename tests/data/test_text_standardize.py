"""The text vectorizer lower-cases every letter, not A-Z only, and keeps
Keras' punctuation stripping; saved vectorizers keep their standardisation."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf.data.text import (load_text_vectorizer, save_text_vectorizer,
                               vectorizer_from_dict, vectorizer_to_dict)

TEXTS = ["Café au lait", "CAFÉ AU LAIT!", "Über alles", "über Ärger", "ΣΟΦΊΑ σοφία",
         "rock-and-roll, U.S.A."]


def _expected_tokens(text):
    # An independent reference: Python's str.lower, Keras' punctuation set removed.
    punctuation = set('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\'')
    return "".join(c for c in text.lower() if c not in punctuation).split()


@pytest.mark.parametrize("remove_stopwords", [False, True])
def test_capitals_with_accents_are_lower_cased(remove_stopwords):
    vec = mmtl_tf.data.make_text_vectorizer(TEXTS, vocab_size=50, sequence_length=6,
                                            remove_stopwords=remove_stopwords)
    vocabulary = vec.get_vocabulary()
    for word in ("café", "über", "ärger", "σοφία"):
        assert word in vocabulary
    for word in ("cafÉ", "Über", "Ärger", "σοφΊα"):
        assert word not in vocabulary
    np.testing.assert_array_equal(vec(["CAFÉ ÜBER"]), vec(["café über"]))


def test_standardisation_matches_python_lower_and_keras_punctuation():
    vec = mmtl_tf.data.make_text_vectorizer(TEXTS, vocab_size=50, sequence_length=8)
    vocabulary = vec.get_vocabulary()
    for text in TEXTS:
        ids = [i for i in vec([text]).numpy()[0] if i]
        assert [vocabulary[i] for i in ids] == _expected_tokens(text)
    # ASCII text is standardised as Keras' own "lower_and_strip_punctuation".
    ascii_texts = ["The Cat, sat!", "on THE mat (again)", "rock-and-roll U.S.A."]
    keras_vec = keras.layers.TextVectorization(standardize="lower_and_strip_punctuation",
                                               output_sequence_length=6)
    keras_vec.adapt(ascii_texts)
    ours = mmtl_tf.data.make_text_vectorizer(ascii_texts, vocab_size=50, sequence_length=6)
    assert ours.get_vocabulary() == keras_vec.get_vocabulary()
    np.testing.assert_array_equal(ours(ascii_texts), keras_vec(ascii_texts))


@pytest.mark.parametrize("remove_stopwords", [False, True])
def test_a_saved_vectorizer_keeps_its_standardisation(tmp_path, remove_stopwords):
    vec = mmtl_tf.data.make_text_vectorizer(TEXTS, vocab_size=50, sequence_length=6,
                                            remove_stopwords=remove_stopwords)
    save_text_vectorizer(vec, tmp_path / "v.json")
    again = load_text_vectorizer(tmp_path / "v.json")
    probe = tf.constant(["CAFÉ ÜBER the Ärger", "the rock-and-roll"])
    np.testing.assert_array_equal(again(probe), vec(probe))


def test_a_vectorizer_saved_with_keras_standardisation_keeps_it():
    # Files written before: "lower_and_strip_punctuation" (A-Z only) stays so.
    vec = keras.layers.TextVectorization(standardize="lower_and_strip_punctuation",
                                         output_sequence_length=4)
    vec.adapt(["CAFÉ au lait"])
    again = vectorizer_from_dict(vectorizer_to_dict(vec))
    assert again.get_config()["standardize"] == "lower_and_strip_punctuation"
    assert "cafÉ" in again.get_vocabulary()


def test_an_unknown_standardize_function_is_refused_when_saving():
    vec = keras.layers.TextVectorization(standardize=tf.strings.upper,
                                         output_sequence_length=4)
    vec.adapt(["a b"])
    with pytest.raises(ValueError, match="cannot save a TextVectorization whose standardize"):
        vectorizer_to_dict(vec)
