import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.encoders import BertEncoder
from tests.harness import run_model_test
from tests.tiny_bert import VOCAB, minilm_path, tiny_backbone, write_hf_config


def _inputs(n=4, length=10, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, len(VOCAB), (n, length)).astype("int32")
    lengths = rng.integers(3, length + 1, n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids[:, 0] = 2
    return {"token_ids": ids * mask, "padding_mask": mask}


@pytest.mark.slow  # XLA-compiling BERT's backward pass three times takes minutes on 2 cores
def test_bert_encoder_harness():
    def build():
        return BertEncoder(tiny_backbone(num_layers=1, hidden_dim=8), pooling="mean",
                           trainable="full")

    x = _inputs(length=8)
    # Targets near the initial outputs keep the loss gradient small. With targets
    # of zero, the first mixed_float16 step overflows at the initial loss scale
    # 2**15 (the segment embedding's gradient sums over every token, all segment
    # ids being 0) and dynamic loss scaling skips it, so the harness's single step
    # would change no weight; the next step trains (checked by hand).
    y = 0.9 * np.asarray(build()(x))
    run_model_test(build, x, y, loss="mse", expected_output_shape=(4, 8),
                   float32_outputs=False)


def test_pooling_matches_the_backbone_outputs():
    backbone = tiny_backbone()
    x = _inputs()
    out = backbone({**x, "segment_ids": np.zeros_like(x["token_ids"])})
    seq, pooled = np.asarray(out["sequence_output"]), np.asarray(out["pooled_output"])
    mask = x["padding_mask"][..., None]
    mean = (seq * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(BertEncoder(backbone, pooling="mean")(x), mean, atol=1e-5)
    np.testing.assert_allclose(BertEncoder(backbone, pooling="cls")(x), pooled, atol=1e-5)
    bool_mask = {**x, "padding_mask": x["padding_mask"].astype(bool)}
    np.testing.assert_allclose(BertEncoder(backbone, pooling="mean")(bool_mask), mean, atol=1e-5)


def test_padding_does_not_change_the_output():
    enc = BertEncoder(tiny_backbone(), pooling="mean")
    x = _inputs(length=10)
    padded = {k: np.pad(v, ((0, 0), (0, 6))) for k, v in x.items()}
    np.testing.assert_allclose(enc(padded), enc(x), atol=1e-5)
    poisoned = {**x, "token_ids": np.where(x["padding_mask"] == 1, x["token_ids"], 7)}
    np.testing.assert_allclose(enc(poisoned), enc(x), atol=1e-5)


def test_trainable_modes():
    frozen = BertEncoder(tiny_backbone(num_layers=4), trainable="frozen")
    assert not frozen.trainable_weights
    partial = BertEncoder(tiny_backbone(num_layers=4), trainable="partial")
    trainable = {l.name for l in partial.backbone.layers if l.trainable and l.weights}
    assert trainable == {"transformer_layer_3", "pooled_dense"}
    two = BertEncoder(tiny_backbone(num_layers=4), trainable="partial", num_trainable_layers=2)
    assert {l.name for l in two.backbone.layers if l.trainable and l.weights} == {
        "transformer_layer_2", "transformer_layer_3", "pooled_dense"}
    full = BertEncoder(tiny_backbone(num_layers=4), trainable="full")
    assert len(full.trainable_weights) == len(full.weights)
    assert len(frozen.weights) == len(full.weights)


def test_mean_pooling_leaves_the_unused_pooler_frozen():
    import warnings

    enc = BertEncoder(tiny_backbone(num_layers=2, hidden_dim=8), pooling="mean",
                      trainable="full")
    assert {l.name for l in enc.backbone.layers if l.weights and not l.trainable} == {
        "pooled_dense"}
    assert len(enc.trainable_weights) == len(enc.weights) - 2  # pooler kernel + bias
    partial = BertEncoder(tiny_backbone(num_layers=2, hidden_dim=8), pooling="mean",
                          trainable="partial")
    assert {l.name for l in partial.backbone.layers if l.trainable and l.weights} == {
        "transformer_layer_1"}
    x = _inputs(length=8)
    enc.compile(optimizer="adam", loss="mse", jit_compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was: "Gradients do not exist for ... pooled_dense"
        enc.fit(x, np.zeros((4, 8), "float32"), epochs=1, verbose=0)


def test_backbone_without_pooler_or_segments():
    import keras_hub

    keras.utils.set_random_seed(0)
    distil = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16)
    x = _inputs()
    seq = np.asarray(distil(x))
    np.testing.assert_allclose(BertEncoder(distil, pooling="cls")(x), seq[:, 0], atol=1e-6)


def test_saved_encoder_never_needs_its_source_again(tmp_path):
    enc = BertEncoder(tiny_backbone(), pooling="mean", trainable="partial", name="text_tower")
    x = _inputs()
    path = tmp_path / "enc.keras"
    wrapper = keras.Model(enc.input, enc(enc.input))
    wrapper.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again(x), enc(x), atol=1e-6)
    config = enc.get_config()
    assert config["pooling"] == "mean" and config["trainable"] == "partial"
    assert config["encoder"]["class_name"] == "BertBackbone"


def test_bad_arguments_and_sources(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="pooling='max'.*'cls', 'mean'"):
        BertEncoder(tiny_backbone(), pooling="max")
    with pytest.raises(ValueError, match="trainable='some'"):
        BertEncoder(tiny_backbone(), trainable="some")
    with pytest.raises(ValueError, match="max_sequence_length=32"):
        BertEncoder(tiny_backbone(), sequence_length=64)
    folder = write_hf_config(tmp_path / "noweights")
    with pytest.raises(mmtl_tf.DataError, match="missing model.safetensors"):
        BertEncoder(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BertEncoder(str(tmp_path / "no" / "such"))
    with pytest.raises(TypeError, match="preset name, a local folder"):
        BertEncoder(3)
    import keras_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(mmtl_tf.DownloadError, match="need internet.*fetch_minilm"):
        BertEncoder("bert_tiny_en_uncased")
    # A mistyped name is not a download to retry (it was a DownloadError).
    with pytest.raises(ValueError, match=r"'bert_tiny_en_uncase' is neither a folder nor a "
                                         r"keras-hub backbone preset \(did you mean "
                                         r"'bert_tiny_en_uncased'"):
        BertEncoder("bert_tiny_en_uncase")
    with pytest.raises(ValueError, match="keras-hub tokenizer preset"):
        mmtl_tf.data.make_bert_preprocessor("nosuch_preset")


def test_real_minilm_gives_the_reference_similarity():
    path = minilm_path()
    enc = BertEncoder(path, pooling="mean")
    pre = mmtl_tf.data.make_bert_preprocessor(path, sequence_length=32)
    e = np.array(enc(pre(["A man is eating food.", "A man is eating a piece of bread."])))
    assert e.shape == (2, 384) and not enc.trainable_weights
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    # sentence-transformers' all-MiniLM-L6-v2 gives 0.755 for this pair.
    assert abs(float(e[0] @ e[1]) - 0.755) < 0.002
