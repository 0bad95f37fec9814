"""`mmtl_tf.export.export_text_classifier`: both SavedModels reproduce the Keras
model in a fresh process; the token-only one loads without tensorflow-text."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.data import BertPreprocessor
from tests.tiny_bert import VOCAB, tiny_backbone

TEXTS = ["The cat sat on the mat.", "a very good film !", "", "zebra " * 40,
         "computer programs eating food"]

FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
saved, texts, out = sys.argv[1:4]
inputs = np.load(out + ".in.npz")
# 1. The tokens-only SavedModel loads and runs without tensorflow-text.
plain = tf.saved_model.load(saved + "/tokens_only").signatures["serving_default"]
plain_out = plain(token_ids=tf.constant(inputs["ids"]), padding_mask=tf.constant(inputs["mask"]))
assert "tensorflow_text" not in sys.modules
# 2. The main SavedModel needs the tensorflow-text ops.
import tensorflow_text  # registers the WordPiece ops the raw-string signature uses
texts = [t.encode("utf-8") for t in json.load(open(texts))] + [b"the \xff cat"]
model = tf.saved_model.load(saved)
result = model.signatures["serving_default"](text=tf.constant(texts))
tokens = model.signatures["serve_tokens"](token_ids=tf.constant(inputs["ids"]),
                                          padding_mask=tf.constant(inputs["mask"]))
np.savez(out, probabilities=result["probabilities"].numpy(),
         class_name=result["class_name"].numpy().astype(str),
         token_probabilities=tokens["probabilities"].numpy(),
         plain_probabilities=plain_out["probabilities"].numpy(),
         plain_class_id=plain_out["class_id"].numpy())
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text_export")
    pre = BertPreprocessor(VOCAB, sequence_length=12)
    model = mmtl_tf.models.build_text_classifier(tiny_backbone(), num_classes=3,
                                                 sequence_length=12, pooling="mean")
    path = mmtl_tf.export.export_text_classifier(model, pre, str(tmp / "saved"),
                                                 class_names=["a", "b", "c"])
    texts = TEXTS + ["the \ufffd cat"]  # what the invalid bytes become
    inputs = pre(texts)
    expected = model.predict(inputs, verbose=0)
    np.savez(str(tmp / "out.npz") + ".in.npz", ids=inputs["token_ids"].numpy(),
             mask=inputs["padding_mask"].numpy())
    (tmp / "texts.json").write_text(json.dumps(TEXTS))
    return path, expected, tmp


@pytest.fixture(scope="module")
def served(exported):
    path, expected, tmp = exported
    out = str(tmp / "out.npz")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, path, str(tmp / "texts.json"), out],
                   check=True, env=env, timeout=300)
    return np.load(out), expected


def test_raw_string_signature_reproduces_keras_in_a_fresh_process(served):
    got, expected = served
    assert got["probabilities"].dtype == np.float32
    # Empty, over-long (truncated) and non-UTF-8 texts included.
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["token_probabilities"], expected, atol=1e-5, rtol=0)
    assert list(got["class_name"]) == [["a", "b", "c"][i] for i in expected.argmax(-1)]


def test_tokens_only_saved_model_loads_without_tensorflow_text(served):
    got, expected = served
    np.testing.assert_allclose(got["plain_probabilities"], expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["plain_class_id"], expected.argmax(-1))


def test_each_weight_is_stored_once(exported):
    import tensorflow as tf

    path, _, _ = exported
    model = mmtl_tf.models.build_text_classifier(tiny_backbone(), num_classes=3,
                                                 sequence_length=12)
    stored = sum(int(np.prod(shape)) for name, shape in
                 tf.train.list_variables(os.path.join(path, "variables", "variables"))
                 if "VARIABLE_VALUE" in name)
    assert stored == model.count_params()


def test_sequence_length_mismatch_is_refused(tmp_path):
    model = mmtl_tf.models.build_text_classifier(tiny_backbone(), num_classes=2,
                                                 sequence_length=12)
    with pytest.raises(ValueError, match="takes 12 token ids per text but the preprocessor "
                                         "makes 10"):
        mmtl_tf.export.export_text_classifier(model, BertPreprocessor(VOCAB, 10),
                                              str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_class_names_of_another_count_are_refused_before_tracing(tmp_path):
    # The message came last under "ValueError in user code:" and four
    # autograph frames of the serving function's tracing.
    model = mmtl_tf.models.build_text_classifier(tiny_backbone(), num_classes=3,
                                                 sequence_length=12)
    with pytest.raises(ValueError) as raised:
        mmtl_tf.export.export_text_classifier(model, BertPreprocessor(VOCAB, 12),
                                              str(tmp_path / "x"), class_names=["a", "b"])
    assert str(raised.value) == ("class_names has 2 names but the model has 3 classes; pass "
                                 "one name per class, in class-id order.")
    assert not os.path.exists(tmp_path / "x")


def test_token_and_text_requests_of_the_wrong_shape_fail_naming_the_input(exported):
    # One row of ids with three rows of mask was broadcast to three
    # predictions; other lengths, 1-D ids, mismatched counts failed with
    # "Incompatible shapes", "Tried to expand dim index 2" or a SelectV2 error;
    # scalar and 2-D text were served.
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the main SavedModel's WordPiece ops)

    path, _, _ = exported
    loaded = tf.saved_model.load(path)
    plain = tf.saved_model.load(os.path.join(path, "tokens_only")).signatures[
        "serving_default"]
    ones = lambda *shape: tf.ones(shape, tf.int32)  # noqa: E731
    for serve in (loaded.signatures["serve_tokens"], plain):
        for ids, mask in ((ones(1, 12), ones(3, 12)), (ones(3, 12), ones(1, 12)),
                          (ones(3, 12), ones(2, 12))):
            with pytest.raises(tf.errors.InvalidArgumentError,
                               match="token_ids and padding_mask must hold the same number"):
                serve(token_ids=ids, padding_mask=mask)
        for ids, mask, words in (
                (ones(1, 13), ones(1, 13), r"token_ids must be a batch of shape \(N, 12\).*"
                                           r"got shape \(1, 13\)"),
                (ones(12), ones(12), r"token_ids .*got shape \(12,\)"),
                (ones(2, 12), ones(2, 11), r"padding_mask .*\(N, 12\).*got shape \(2, 11\)")):
            with pytest.raises(tf.errors.InvalidArgumentError, match=words):
                serve(token_ids=ids, padding_mask=mask)
        assert serve(token_ids=ones(0, 12), padding_mask=ones(0, 12))[
            "probabilities"].shape == (0, 3)
        # A negative id was served as an id from the vocabulary's end; one
        # past it failed in the embedding's gather naming no row.
        for bad in (-1, len(VOCAB)):
            ids = np.ones((4, 12), np.int32)
            ids[2, 5] = bad
            with pytest.raises(tf.errors.InvalidArgumentError,
                               match=rf"token_ids: ids outside \[0, {len(VOCAB)}\) .*"
                                     r"positions of the batch:.*\[2\]"):
                serve(token_ids=tf.constant(ids), padding_mask=ones(4, 12))
        mask = np.ones((3, 12), np.int32)
        mask[0, 0] = 2
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"padding_mask: values other than 0 and 1 .*\[0\]"):
            serve(token_ids=ones(3, 12), padding_mask=tf.constant(mask))
        ids = np.full((1, 12), len(VOCAB) - 1, np.int32)
        assert serve(token_ids=tf.constant(ids), padding_mask=ones(1, 12))[
            "probabilities"].shape == (1, 3)
    serve_text = loaded.signatures["serving_default"]
    for text, shape in (("a cat", r"\(\)"), ([["a cat"]], r"\(1, 1\)")):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"text must be a batch of shape \(N,\).*got shape " + shape):
            serve_text(text=tf.constant(text))
    assert serve_text(text=tf.constant([], tf.string))["probabilities"].shape == (0, 3)
