"""Dual-encoder, embedding and matching-network SavedModels on raw inputs,
checked in a fresh Python process against the Keras models."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.data.sources import load_image_text_records
from mmtl_tf.export import (export_image_embedding, export_image_text_dual_encoder,
                            export_matching_network)

FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
root, rows_file, out = sys.argv[1:4]
rows = json.load(open(rows_file))
images = tf.constant([open(r["path"], "rb").read() for r in rows])
captions = tf.constant([r["caption"] for r in rows])
dual = tf.saved_model.load(root + "/dual")
embedding = tf.saved_model.load(root + "/embedding")
matching = tf.saved_model.load(root + "/matching")
result = {
    "signatures": sorted(dual.signatures),
    "image": dual.signatures["encode_image"](image_bytes=images)["embeddings"].numpy(),
    "text": dual.signatures["encode_text"](text=captions)["embeddings"].numpy(),
    "embedding": embedding.signatures["encode_image"](image_bytes=images)["embeddings"].numpy(),
    "empty_image": dual.signatures["encode_image"](image_bytes=images[:0])["embeddings"].numpy(),
    "empty_text": dual.signatures["encode_text"](text=captions[:0])["embeddings"].numpy(),
    "empty_embedding": embedding.signatures["encode_image"](
        image_bytes=images[:0])["embeddings"].numpy(),
    "probabilities": matching.signatures["classify"](
        support_image_bytes=images[:6], support_labels=tf.constant([0, 1, 2, 0, 1, 2]),
        query_image_bytes=images[6:])["probabilities"].numpy(),
}
np.savez(out, **{k: np.asarray(v) for k, v in result.items()})
"""


def _encoder():
    return mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3), conv_filters=4)


def _dual_encoder(vocab_size, sequence_length, projection_dim):
    return mmtl_tf.models.build_dual_encoder(
        _encoder(), mmtl_tf.encoders.TextEncoder(vocab_size=vocab_size,
                                                 sequence_length=sequence_length,
                                                 embedding_dim=4, lstm_units=4),
        projection_dim=projection_dim)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared_space_export")
    train = load_image_text_records("default", "train")
    test = load_image_text_records("default", "test")
    vec = mmtl_tf.data.make_text_vectorizer(train.captions, vocab_size=200, sequence_length=8)
    keras.utils.set_random_seed(0)
    dual = _dual_encoder(vocab_size=200, sequence_length=8, projection_dim=8)
    # Unnormalised here: normalising the small random vectors of an untrained
    # tower would magnify float round-off between the two runtimes past 1e-5.
    embedding = mmtl_tf.models.build_embedding_model(_encoder(), projection_dim=8,
                                                     normalize=False)
    matching = mmtl_tf.models.build_matching_network(_encoder(), projection_dim=8)
    ds = mmtl_tf.data.make_image_text_dataset("default", "test", text_vectorizer=vec,
                                              image_size=(32, 32), batch_size=10, shuffle=False,
                                              with_labels=False)
    x = next(iter(ds))
    support_labels = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
    expected = {
        "image": np.asarray(dual.encode_image(x["image"])),
        "text": np.asarray(dual.encode_text(x["text"])),
        "embedding": np.asarray(embedding(x["image"])),
        "probabilities": np.asarray(matching({
            "support": np.asarray(x["image"])[None, :6], "support_labels": support_labels[None],
            "queries": np.asarray(x["image"])[None, 6:]}))[0],
    }
    export_image_text_dual_encoder(dual, vec, str(tmp / "dual"), image_size=(32, 32))
    export_image_embedding(embedding, str(tmp / "embedding"), image_size=(32, 32))
    export_matching_network(matching, str(tmp / "matching"), image_size=(32, 32))
    rows = [{"path": p, "caption": c} for p, c in zip(test.paths[:10], test.captions[:10])]
    (tmp / "rows.json").write_text(json.dumps(rows))
    return tmp, expected


def test_saved_models_reproduce_keras_in_a_fresh_process(exported):
    tmp, expected = exported
    out = tmp / "out.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp), str(tmp / "rows.json"),
                    str(out)], check=True, env=env, timeout=300)
    got = np.load(out)
    assert set(got["signatures"]) == {"serving_default", "encode_image", "encode_text"}
    for key in ("image", "text", "embedding", "probabilities"):
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5, rtol=0, err_msg=key)
    np.testing.assert_allclose(np.linalg.norm(got["image"], axis=1), 1.0, rtol=1e-5)
    # Empty requests get empty answers of the right width.
    for key, like in (("empty_image", "image"), ("empty_text", "text"),
                      ("empty_embedding", "embedding")):
        assert got[key].shape == (0, got[like].shape[1]), key


def test_missing_preprocessor_is_named(tmp_path):
    image = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3), conv_filters=2)
    text = mmtl_tf.encoders.TextEncoder(vocab_size=10, sequence_length=3, embedding_dim=2,
                                        lstm_units=2)
    model = mmtl_tf.models.build_dual_encoder(image, text, projection_dim=2)
    with pytest.raises(ValueError, match="no preprocessor for modality 'text'"):
        mmtl_tf.export.export_dual_encoder(
            model, str(tmp_path / "x"),
            {"image": mmtl_tf.export.image_bytes_preprocessor((16, 16))})
    assert not (tmp_path / "x").exists()


def test_bad_support_sets_fail_the_request_with_their_reason(exported):
    # A label -1 was dropped by one_hot (probabilities no longer summed to 1),
    # and an empty support set failed with "depth must be non-negative".
    import tensorflow as tf

    tmp, _ = exported
    classify = tf.saved_model.load(str(tmp / "matching")).signatures["classify"]
    images = tf.constant([open(p, "rb").read()
                          for p in load_image_text_records("default", "test").paths[:3]])
    for labels, support, words in (
            ([0, -1], images[:2], "class numbers 0, 1, ..., N-1"),
            ([0, 2], images[:2], "every class number"),
            ([], images[:0], "the support set is empty"),
            ([0, 1], images[:1], "support_image_bytes and support_labels must hold the same")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            classify(support_image_bytes=support, support_labels=tf.constant(labels, tf.int32),
                     query_image_bytes=images[2:])
    out = classify(support_image_bytes=images[:2], support_labels=tf.constant([1, 0]),
                   query_image_bytes=images[2:])
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)
    # Items that are not image files are named by input and position.
    files = list(images.numpy())
    for support, queries, words in (
            ([files[0], b"x"], files[2:], r"support_image_bytes: not JPEG.*\] \[1\]"),
            (files[:2], [files[2], b"iVBORw0KGgo"],
             r"query_image_bytes: base64 text.*\] \[1\]")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            classify(support_image_bytes=tf.constant(support),
                     support_labels=tf.constant([1, 0]), query_image_bytes=tf.constant(queries))
    # No query: empty outputs (it failed with "Matrix size-incompatible").
    out = classify(support_image_bytes=images[:2], support_labels=tf.constant([1, 0]),
                   query_image_bytes=images[:0])
    assert out["probabilities"].shape == (0, 2) and out["class_id"].shape == (0,)


def test_inputs_of_another_shape_fail_naming_the_input(exported):
    # Scalar or (1, 1) image bytes, labels and text failed deep in the graph
    # ("slice index 0 of dimension 0 out of bounds", "In[0] should be a
    # scalar", StringSplitV2's "input must be a vector").
    import tensorflow as tf

    tmp, _ = exported
    images = tf.constant([open(p, "rb").read()
                          for p in load_image_text_records("default", "test").paths[:3]])
    dual = tf.saved_model.load(str(tmp / "dual")).signatures
    embedding = tf.saved_model.load(str(tmp / "embedding")).signatures["encode_image"]
    classify = tf.saved_model.load(str(tmp / "matching")).signatures["classify"]
    good = dict(support_image_bytes=images[:2], support_labels=tf.constant([0, 1]),
                query_image_bytes=images[2:])
    cases = [(dual["encode_image"], dict(image_bytes=images[0]), "image_bytes", "()"),
             (dual["encode_image"], dict(image_bytes=images[:1, None]), "image_bytes",
              "(1, 1)"),
             (dual["encode_text"], dict(text=tf.constant("a cat")), "text", "()"),
             (dual["encode_text"], dict(text=tf.constant([["a cat"]])), "text", "(1, 1)"),
             (embedding, dict(image_bytes=images[0]), "image_bytes", "()")]
    for name, bad in (("support_image_bytes", images[0]),
                      ("query_image_bytes", images[:1, None]),
                      ("support_labels", tf.constant([[0, 1]]))):
        cases.append((classify, {**good, name: bad}, name, str(tuple(bad.shape))))
    cases.append((classify, {**good, "support_image_bytes": images[:1],
                             "support_labels": tf.constant(0)}, "support_labels", "()"))
    for fn, inputs, name, shape in cases:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"{name} must be a batch of shape \(N,\).*got shape "
                                 + shape.replace("(", r"\(").replace(")", r"\)")):
            fn(**inputs)


def test_a_caption_of_no_tokens_embeds_as_the_zero_vector(exported):
    # Documented (export docstrings, README Export): "", whitespace- or
    # punctuation-only captions are all padding ids, which the masked
    # TextEncoder and the bias-free projection map to the zero vector, as the
    # Keras model does; out-of-vocabulary words are [UNK] tokens: unit length.
    import tensorflow as tf

    tmp, _ = exported
    dual = tf.saved_model.load(str(tmp / "dual")).signatures
    text = dual["encode_text"](text=tf.constant(["", " ", "!!!", "zzzq qqqz", "a cat"]))[
        "embeddings"].numpy()
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), [0, 0, 0, 1, 1], atol=1e-5)
    assert not text[:3].any()
    images = tf.constant([open(load_image_text_records("default", "test").paths[0],
                               "rb").read()])
    image = dual["encode_image"](image_bytes=images)["embeddings"].numpy()
    np.testing.assert_array_equal(text[:3] @ image.T, 0.0)


def test_a_wrong_image_size_is_named_before_anything_is_written(tmp_path):
    # The dual encoder's and the matching network's exports failed in tracing
    # with Keras' "expected shape=(None, 32, 32, 3), found shape=(None, 16,
    # 16, 3)", naming no argument (the other image exports checked it).
    dual = _dual_encoder(vocab_size=20, sequence_length=4, projection_dim=4)
    vec = mmtl_tf.data.make_text_vectorizer(["a b c"], vocab_size=20, sequence_length=4)
    with pytest.raises(ValueError, match=r"image_size=\(16, 16\) but the image tower takes "
                                         r"images of 32 x 32 pixels .*pass image_size=\(32, 32\)"):
        export_image_text_dual_encoder(dual, vec, str(tmp_path / "dual"), image_size=(16, 16))
    matching = mmtl_tf.models.build_matching_network(_encoder(), projection_dim=4)
    with pytest.raises(ValueError, match=r"image_size=\(16, 16\) but the matching network "
                                         r"takes images of 32 x 32 pixels"):
        export_matching_network(matching, str(tmp_path / "m"), image_size=(16, 16))
    with pytest.raises(ValueError, match=r"grayscale=True makes 1-channel images but the "
                                         r"matching network takes 3"):
        export_matching_network(matching, str(tmp_path / "m"), image_size=(32, 32),
                                grayscale=True)
    # image_size=32 and a missing tokenizer failed with TypeErrors, a
    # vectorizer of another sequence length with Keras' shape message.
    with pytest.raises(ValueError, match=r"image_size=32: expected \(height, width\)"):
        export_image_text_dual_encoder(dual, vec, str(tmp_path / "dual"), image_size=32)
    with pytest.raises(TypeError, match="text_tokenizer must be the tokenizer the model was "
                                        "trained with .*got NoneType"):
        export_image_text_dual_encoder(dual, None, str(tmp_path / "dual"), image_size=(32, 32))
    longer = mmtl_tf.data.make_text_vectorizer(["a b c"], vocab_size=20, sequence_length=12)
    with pytest.raises(ValueError, match=r"the text vectorizer makes 12 tokens per text, where "
                                         r"the model's text tower takes 4"):
        export_image_text_dual_encoder(dual, longer, str(tmp_path / "dual"), image_size=(32, 32))
    assert os.listdir(tmp_path) == []


def test_a_bert_preprocessor_of_another_length_is_named():
    # A tower of fixed length fed by a BertPreprocessor of another length failed
    # in tracing with Keras' shape message; a tower of any length takes any.
    import keras

    from mmtl_tf.export import check_sequence_length_fits

    def tower(length):
        inputs = {name: keras.Input((length,), dtype="int32", name=name)
                  for name in ("token_ids", "padding_mask")}
        pooled = keras.layers.GlobalAveragePooling1D()(
            keras.layers.Embedding(30, 4)(inputs["token_ids"]))
        return keras.Model(inputs, pooled, name=f"bert_like_{length}")

    class Preprocessor:
        sequence_length = 12

        def __call__(self, texts):
            raise AssertionError("not called")

    class Model:
        def __init__(self, text):
            self._text = text

        def tower(self, modality):
            return self._text

    with pytest.raises(ValueError, match=r"makes 12 tokens per text, where the model's text "
                                         r"tower takes 8"):
        check_sequence_length_fits(Model(tower(8)), Preprocessor())
    check_sequence_length_fits(Model(tower(12)), Preprocessor())
    check_sequence_length_fits(Model(tower(None)), Preprocessor())
