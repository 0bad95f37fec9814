"""`coco_captions_to_pairs` on TFDS-shaped examples built locally (no download)."""

import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf


def test_coco_captions_format_to_pairs():
    rng = np.random.default_rng(0)
    examples = [{"image": rng.integers(0, 255, (20 + 5 * i, 30, 3)).astype("uint8"),
                 "captions": {"text": [f"a photo number {i} caption {k}" for k in range(2 + i)]}}
                for i in range(3)]
    ds = tf.data.Dataset.from_generator(
        lambda: iter(examples),
        output_signature={"image": tf.TensorSpec((None, 30, 3), tf.uint8),
                          "captions": {"text": tf.TensorSpec((None,), tf.string)}})
    vec = mmtl_tf.data.make_text_vectorizer(
        [c for e in examples for c in e["captions"]["text"]], vocab_size=50, sequence_length=6)
    every = list(mmtl_tf.data.coco_captions_to_pairs(ds, vec, (16, 16), all_captions=True,
                                                     batch_size=4))
    assert sum(len(b["image"]) for b in every) == 2 + 3 + 4     # one row per caption
    assert every[0]["image"].shape == (4, 16, 16, 3) and every[0]["text"].dtype == tf.int32
    one = list(mmtl_tf.data.coco_captions_to_pairs(ds, vec, (16, 16), batch_size=8))
    assert len(one) == 1 and len(one[0]["image"]) == 3          # one caption per image
    picked = [vec.get_vocabulary()[t] for t in one[0]["text"].numpy()[:, 2]]
    assert picked == ["number"] * 3
    with pytest.raises(ValueError, match="split='dev'"):
        mmtl_tf.data.load_tfds_coco_captions("dev", text_vectorizer=vec)
