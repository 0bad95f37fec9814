import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.data import BertPreprocessor
from mmtl_tf.models import (build_lstm_text_classifier, build_text_classifier,
                            build_text_head, encode_texts)
from tests.harness import run_model_test
from tests.tiny_bert import VOCAB, tiny_backbone


def _inputs(n=4, length=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, len(VOCAB), (n, length)).astype("int32")
    mask = np.ones((n, length), "int32")
    mask[0, 5:] = 0
    return {"token_ids": ids * mask, "padding_mask": mask}


def test_text_classifier_harness():
    # A frozen one-block BERT + the new head: the configuration, small.
    run_model_test(
        lambda: build_text_classifier(tiny_backbone(num_layers=1, hidden_dim=8), num_classes=3,
                                      head_units=(4,), sequence_length=8),
        _inputs(), np.array([0, 1, 2, 0]), loss="sparse_categorical_crossentropy",
        expected_output_shape=(4, 3))


@pytest.mark.slow
def test_lstm_text_classifier_harness():
    x = np.random.default_rng(0).integers(0, 40, (4, 6)).astype("int32")
    run_model_test(lambda: build_lstm_text_classifier(40, 6, embedding_dim=4, lstm_units=4,
                                                      num_classes=3, head_units=(4,)),
                   x, np.array([0, 1, 2, 0]), loss="sparse_categorical_crossentropy",
                   expected_output_shape=(4, 3))


def test_structure_mirrors_the_documents_head():
    model = build_text_classifier(tiny_backbone(), num_classes=8, sequence_length=16)
    head = model.get_layer("head")
    assert [type(l).__name__ for l in head.layers] == ["InputLayer", "Dense", "Dropout", "Dense"]
    assert head.get_layer("dense_0").units == 128
    assert head.get_layer("dropout_0").rate == 0.5
    assert head.get_layer("classifier").activation.__name__ == "softmax"
    # Pooled before the head: one vector per text, not one per token as in the document.
    assert model.get_layer("bert_encoder").output.shape == (None, 16)
    assert model.output.shape == (None, 8)
    assert not model.get_layer("bert_encoder").trainable_weights  # frozen by default
    binary = build_text_classifier(tiny_backbone(), num_classes=1, sequence_length=16)
    assert binary.get_layer("head").get_layer("classifier").activation.__name__ == "sigmoid"


def test_cached_features_equal_the_full_model():
    pre = BertPreprocessor(VOCAB, sequence_length=24)
    model = build_text_classifier(tiny_backbone(), num_classes=3, sequence_length=24,
                                  pooling="mean")
    texts = ["the cat sat on the mat", "good", "a very bad film .", "the dog is not good !",
             "computer program", "eat food", "cafe"] * 3
    features = encode_texts(model.get_layer("bert_encoder"), pre, texts, batch_size=4, bucket=4)
    full = model.get_layer("bert_encoder")(pre(texts))
    np.testing.assert_allclose(features, full, atol=1e-5)
    np.testing.assert_allclose(model.get_layer("head")(features), model(pre(texts)), atol=1e-5)


def test_head_on_cached_features_learns_held_out_texts():
    # Two classes told apart by one word among random filler words.
    rng = np.random.default_rng(0)
    filler = ["the", "a", "cat", "dog", "sat", "on", "mat", "film", "movie", "is", "was"]

    def make(n):
        texts, labels = [], []
        for i in range(n):
            words = list(rng.choice(filler, 5))
            words.insert(int(rng.integers(0, 6)), ["good", "bad"][i % 2])
            texts.append(" ".join(words))
            labels.append(i % 2)
        return texts, np.array(labels)

    pre = BertPreprocessor(VOCAB, sequence_length=16)
    model = build_text_classifier(tiny_backbone(hidden_dim=32), num_classes=2,
                                  sequence_length=16, pooling="mean", dropout=0.0)
    encoder, head = model.get_layer("bert_encoder"), model.get_layer("head")
    (train_x, train_y), (test_x, test_y) = make(200), make(100)
    mmtl_tf.training.compile_classifier(head, 2, learning_rate=1e-2, jit_compile=False)
    head.fit(encode_texts(encoder, pre, train_x), train_y, epochs=30, batch_size=32, verbose=0)
    # The trained head inside the full model, on raw-text inputs it never saw.
    accuracy = np.mean(np.argmax(model.predict(pre(test_x), verbose=0), -1) == test_y)
    assert accuracy > 0.8


def test_mean_pooled_classifier_reads_the_padding_mask_as_a_boolean():
    model = build_text_classifier(tiny_backbone(num_layers=1, hidden_dim=8), num_classes=3,
                                  head_units=(4,), sequence_length=8, pooling="mean")
    x = _inputs()
    expected = np.asarray(model(x))
    as_ids = {"token_ids": x["token_ids"], "padding_mask": x["token_ids"]}  # nonzero = real
    np.testing.assert_allclose(np.asarray(model(as_ids)), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"got mask shape \(1, 8\)"):
        model({"token_ids": x["token_ids"], "padding_mask": x["padding_mask"][:1]})


def test_bad_arguments():
    with pytest.raises(ValueError, match="sequence_length=64.*max_sequence_length=32"):
        build_text_classifier(tiny_backbone(), num_classes=2, sequence_length=64)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        build_text_classifier(tiny_backbone(), num_classes=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        build_text_head(8, 2, dropout=1.0)
