"""Writes notebooks/02_shared_embedding_space.ipynb (run: python notebooks/build_02_shared_embedding_space.py).

The notebook is generated so that its cells stay reviewable as code; outputs are
not stored (the test suite executes it in small mode)."""

import sys

import notebook_writer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


CELLS = [
    ("md", r"""# 02 · A shared embedding space: Siamese, triplet and matching networks, CLIP

Section 3.1.1 of the source document asks for a representation space shared by images and text, "such as Siamese Network, Triplet Loss, Matching Network", and writes the objective as

$$L = \sum_i D\big(f(x_i), g(y_i)\big) + \alpha \sum_j D\big(f(x_j), g(y_j)\big)$$

— the distance of matched pairs plus a weighted term over other pairs. As written, both sums *decrease* when everything collapses to one point; a usable loss must push the non-matching pairs **apart**. This notebook shows the losses that do this honestly, all in `mmtl_tf.losses`:

| loss | first term (matched pairs) | second term (other pairs) |
|---|---|---|
| `contrastive_loss` (Hadsell et al. 2006) | $y\,d^2$ for similar pairs | $\alpha=1$: $(1-y)\max(m-d,0)^2$, a hinge that pushes dissimilar pairs to at least the margin |
| `triplet_loss` (FaceNet) | $d(a,p)$ | $-d(a,n)$, inside $\max(d(a,p)-d(a,n)+m, 0)$; negatives mined in the batch |
| `clip_loss` (CLIP / InfoNCE) | similarity of the matched pair (softmax numerator) | all other pairs of the batch (softmax denominator), both directions |

All models are built from `mmtl_tf` imports and trained on the bundled emoji sample (1,906 Noto emoji, name as caption, Unicode category as label). Set `MMTL_TF_NOTEBOOK_SMALL=1` for a fast run with tiny shapes (the test suite does that)."""),
    ("code", r"""import os

# Before TensorFlow loads: hides its C++ error lines, harmless here ("failed
# call to cuInit" without a GPU; oneDNN falling back without AVX-512). Two
# start-up notes (oneDNN custom operations, no CUDA drivers) still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import mmtl_tf
from mmtl_tf.tasks import shared_space

tf.get_logger().setLevel("ERROR")  # no retracing / asset-writing notes in the outputs
import warnings
warnings.filterwarnings("ignore", message=".*ran out of data.*")  # finite tf.data epochs

SMALL = os.environ.get("MMTL_TF_NOTEBOOK_SMALL") == "1"
SIZE = "tiny" if SMALL else "base"
EPOCHS = 1 if SMALL else None  # None: the recipe's
keras.utils.set_random_seed(0)

def recipe(name):
    r = mmtl_tf.recipes.load_recipe(name, SIZE)
    if EPOCHS:
        r["epochs"] = EPOCHS
    return r

image_size = tuple(recipe("siamese")["image_size"])
data = shared_space.load_labelled_images("default", ["train", "validation", "test"], image_size)
class_names = data["class_names"]
split = {s: {"images": data["images"][data["split"] == s], "labels": data["labels"][data["split"] == s]}
         for s in ("train", "validation", "test")}
print({s: len(v["labels"]) for s, v in split.items()}, "images;", len(class_names), "categories")"""),
    ("md", r"""## 1 · Siamese network and the contrastive loss

One tower (`ImageEncoder`, the small CNN) embeds both images of a pair; the model outputs their distance. Pairs come from `mmtl_tf.data.random_pairs` (half of them from the same category, `y = 1`)."""),
    ("code", r"""cfg = recipe("siamese")

def pair_dataset(s, num, seed, reshuffle=True):
    images = tf.constant(split[s]["images"])
    pairs = mmtl_tf.data.random_pairs(split[s]["labels"], num, seed=seed,
                                      reshuffle_each_iteration=reshuffle)
    return pairs.map(lambda i, j, same: ({"left": tf.gather(images, i),
                                          "right": tf.gather(images, j)}, same)).batch(cfg["batch_size"])

siamese = mmtl_tf.models.build_siamese_network(shared_space.build_image_tower(cfg),
                                               projection_dim=cfg["projection_dim"])
siamese.compile(optimizer=shared_space.optimizer(cfg), loss=mmtl_tf.losses.ContrastiveLoss(cfg["margin"]))
history = siamese.fit(pair_dataset("train", cfg["pairs_per_epoch"], 0),
                      validation_data=pair_dataset("validation", cfg["eval_pairs"], 1, False),
                      epochs=cfg["epochs"], verbose=0)

distances, same = [], []
for x, y in pair_dataset("test", cfg["eval_pairs"], 2, False):
    distances.append(siamese.predict_on_batch(x)); same.append(y.numpy())
distances, same = np.concatenate(distances), np.concatenate(same).astype(bool)
plt.figure(figsize=(5, 3))
plt.hist(distances[same], bins=30, alpha=0.6, label="same category")
plt.hist(distances[~same], bins=30, alpha=0.6, label="different category")
plt.xlabel("embedding distance (test pairs)"); plt.legend(); plt.tight_layout()
print("training loss per epoch:", np.round(history.history["loss"], 3))"""),
    ("md", r"""## 2 · Triplet loss with online mining

The embedding model is trained directly on batches of **P categories × K images** (`class_balanced_batches`) so that every anchor has positives; `TripletLoss` mines the triplets inside each batch. The three strategies on one batch of untrained embeddings:"""),
    ("code", r"""cfg = recipe("triplet")
images, labels = tf.constant(split["train"]["images"]), tf.constant(split["train"]["labels"])

def balanced(seed, num_batches=None):
    idx = mmtl_tf.data.class_balanced_batches(split["train"]["labels"], cfg["classes_per_batch"],
                                              cfg["examples_per_class"], num_batches=num_batches, seed=seed)
    return idx.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))

x, y = next(iter(balanced(0, 1)))
untrained = mmtl_tf.models.build_embedding_model(shared_space.build_image_tower(cfg), cfg["projection_dim"])
e = untrained(x)
for mining in ("semi_hard", "batch_hard", "batch_all"):
    print(f"{mining:10s} loss on one batch: {float(mmtl_tf.losses.triplet_loss(y, e, 0.2, mining)):.4f}")"""),
    ("code", r"""steps = max(1, len(split["train"]["labels"]) // (cfg["classes_per_batch"] * cfg["examples_per_class"]))
embeddings = {}
for mining in ("semi_hard", "batch_hard"):
    keras.utils.set_random_seed(0)
    model = mmtl_tf.models.build_embedding_model(shared_space.build_image_tower(cfg), cfg["projection_dim"])
    model.compile(optimizer=shared_space.optimizer(cfg), loss=mmtl_tf.losses.TripletLoss(cfg["margin"], mining))
    model.fit(balanced(1, steps), epochs=cfg["epochs"], verbose=0)
    embeddings[mining] = model

test, train = split["test"], split["train"]
pixels = shared_space.category_retrieval(shared_space.pixel_embeddings(test["images"]), test["labels"],
                                         shared_space.pixel_embeddings(train["images"]), train["labels"])
print("same-category retrieval of test images among training images (R@1 = 1-NN accuracy)")
print(f"  chance {pixels['chance_R@1']:.3f}   raw pixels {pixels['R@1']:.3f}")
for mining, model in embeddings.items():
    m = shared_space.category_retrieval(shared_space.embed_images(model, test["images"]), test["labels"],
                                        shared_space.embed_images(model, train["images"]), train["labels"])
    print(f"  {mining:10s} R@1 {m['R@1']:.3f}  R@5 {m['R@5']:.3f}  mAP@10 {m['mAP@10']:.3f}"
          f"  ({'above' if m['R@1'] > pixels['R@1'] else 'not above'} raw pixels)")"""),
    ("md", r"""**Read these against the raw-pixel line.** On the emoji categories the embeddings learnt from scratch here (Siamese, triplet, and the matching network below) do **not** beat nearest neighbours on raw pixels: the categories are told apart largely by colour and layout, which pixel similarity already captures, and 1,334 small images are little to learn more from. The README's longer command-line runs say the same (`mmtl-tf train triplet`: semi-hard R@1 0.582 against raw pixels 0.646). Batch-hard mining trails semi-hard: training on each anchor's hardest negative from the start can collapse the embedding (the FaceNet paper chose semi-hard negatives for this reason). What this section shows is the mechanics (class-balanced batches, in-batch mining, retrieval metrics with their baselines); for a space that beats pixels, start from pretrained features (`mmtl-tf train matching --recipe matching_pretrained` does, on both bundled data sets)."""),
    ("md", r"""## 3 · Matching network: few-shot classification of categories never seen in training

`build_matching_network` embeds a support set and queries with one tower and classifies each query by cosine attention over the support labels (Vinyals et al. 2016). Training uses episodes of some categories (`few_shot_episodes`); the test uses 5-way episodes of 5 **held-out** categories. The sample has only 9 categories, so training sees 4 (4-way episodes)."""),
    ("code", r"""from mmtl_tf.tasks import matching as matching_task

cfg = recipe("matching")
train_ids, test_ids = matching_task.split_classes(class_names, data["labels"], cfg)
print("train categories:", [class_names[c] for c in train_ids])
print("held-out categories:", [class_names[c] for c in test_ids])
seen = np.isin(data["labels"], train_ids) & (data["split"] == "train")
held = np.isin(data["labels"], test_ids)
way = min(cfg["train_way"], len(train_ids))
episodes = matching_task.episode_dataset(data["images"][seen], data["labels"][seen], way, cfg["train_shot"],
                                         cfg["train_queries"], cfg["episodes_per_epoch"], cfg["episodes_per_batch"], 0)
matcher = mmtl_tf.models.build_matching_network(shared_space.build_image_tower(cfg))
matcher.compile(optimizer=shared_space.optimizer(cfg), loss="sparse_categorical_crossentropy",
                metrics=["sparse_categorical_accuracy"])
matcher.fit(episodes, epochs=cfg["epochs"], verbose=0)
for shot in cfg["eval_shots"]:
    acc, ci, pix = matching_task.few_shot_accuracy(matcher, data["images"][held], data["labels"][held], cfg, shot, 100 + shot)
    print(f"5-way {shot}-shot on held-out categories: {acc:.3f} ± {ci:.3f} (raw pixels {pix:.3f}, chance 0.200)")"""),
    ("md", r"""Above chance, but as with the triplet embeddings not above raw-pixel matching: trained on only 4 categories, the small CNN learns little that carries over to 5 unseen ones (the README's table: 0.320 / 0.409 against raw pixels 0.398 / 0.500; with frozen EfficientNet-Lite0 features, `--recipe matching_pretrained`, 0.422 / 0.523)."""),
    ("code", r"""# One test episode: the support set (one image per class) and a few queries with their predictions.
ep_ds = matching_task.episode_dataset(data["images"][held], data["labels"][held], 5, 1, 2, 1, 1, 7, reshuffle=False)
(x, y), = ep_ds.take(1).as_numpy_iterator()
probs = matcher.predict_on_batch(x)[0]
fig, axes = plt.subplots(2, 5, figsize=(10, 4.2))
for c in range(5):
    axes[0, c].imshow(x["support"][0, c]); axes[0, c].set_title(f"support: class {c}", fontsize=8)
for q in range(5):
    axes[1, q].imshow(x["queries"][0, 2 * q])
    pred = int(probs[2 * q].argmax())
    axes[1, q].set_title(f"query (class {y[0, 2 * q]})\npred {pred} p={probs[2 * q, pred]:.2f}", fontsize=8,
                         color="green" if pred == y[0, 2 * q] else "red")
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()"""),
    ("md", r"""## 4 · CLIP-style dual encoder: images and captions in one space

`build_dual_encoder(image_encoder, text_encoder, projection_dim, loss="clip")` puts a projection head and an L2 normalisation on each tower and learns a temperature (`logit_scale`, initialised to 1/0.07, clamped to [1, 100]). Its `compute_loss` scores the `y_pred` that `fit` passes in, so `fit`, XLA and mixed precision work unchanged. The same code is behind `mmtl-tf train dual-encoder`."""),
    ("code", r"""from mmtl_tf.tasks import dual_encoder as dual_task

cfg = recipe("dual_encoder")
train_records = mmtl_tf.data.load_image_text_records("default", "train")
vectorizer = mmtl_tf.data.make_text_vectorizer(train_records.captions, vocab_size=cfg["vocab_size"],
                                               sequence_length=cfg["sequence_length"])
def pairs(split, training=False):
    # (image, caption) pairs without labels: the pairing is the row order.
    return mmtl_tf.data.make_image_text_dataset(
        "default", split, text_vectorizer=vectorizer, image_size=tuple(cfg["image_size"]),
        batch_size=cfg["batch_size"], seed=cfg["seed"], augment=cfg["augment"] and training,
        shuffle=training, drop_remainder=training, with_labels=False)


train_ds, val_ds = pairs("train", training=True), pairs("validation")
clip = dual_task.build_model(cfg)
clip.compile(optimizer=shared_space.optimizer(cfg))
history = clip.fit(train_ds, validation_data=val_ds, epochs=cfg["epochs"], verbose=0,
                   callbacks=[keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)])
print("learned temperature: logit scale =", round(clip.logit_scale_value(), 2))
results = dual_task.retrieval(clip, cfg, vectorizer, "test")
print(shared_space.format_retrieval_table(results, ("image_to_text", "text_to_image"),
                                          title=f"test retrieval among {results['num_pairs']} pairs"))"""),
    ("md", r"""### A 2-D map of the joint space

PCA of the test images' and captions' embeddings together; colour = category, ● image, × caption. Lines join a few matched pairs."""),
    ("code", r"""test_records = mmtl_tf.data.load_image_text_records("default", "test")
embedded, _, _ = mmtl_tf.metrics.embed_dataset(clip, pairs("test"))
both = np.concatenate([embedded["image"], embedded["text"]])
centred = both - both.mean(axis=0)
_, _, vt = np.linalg.svd(centred, full_matrices=False)
xy = centred @ vt[:2].T
n = len(embedded["image"])
colours = np.array([class_names.index(label) for label in test_records.labels])
plt.figure(figsize=(7, 5.5))
cmap = plt.get_cmap("tab10")
plt.scatter(xy[:n, 0], xy[:n, 1], c=cmap(colours), s=14, marker="o")
plt.scatter(xy[n:, 0], xy[n:, 1], c=cmap(colours), s=18, marker="x")
for i in range(0, n, max(1, n // 12)):
    plt.plot([xy[i, 0], xy[n + i, 0]], [xy[i, 1], xy[n + i, 1]], color="grey", lw=0.5)
for c, name in enumerate(class_names):
    plt.scatter([], [], color=cmap(c), label=name)
plt.legend(fontsize=7, loc="best"); plt.title("test images (●) and captions (×), PCA"); plt.tight_layout()"""),
    ("md", r"""### Retrieval results as images

Text → image: each row is a caption from the test split and the five test images closest to it (green frame: the caption's own image)."""),
    ("code", r"""index = mmtl_tf.metrics.EmbeddingIndex(embedded["image"])
queries = [0, 40, 80, 120] if n > 120 else [0, 1, 2, 3]
scores, ids = index.search(embedded["text"][queries], k=5)
fig, axes = plt.subplots(len(queries), 6, figsize=(11, 2.1 * len(queries)))
for row, q in enumerate(queries):
    axes[row, 0].text(0, 0.5, test_records.captions[q][:40], fontsize=8, va="center", wrap=True)
    axes[row, 0].axis("off")
    for col, (i, s) in enumerate(zip(ids[row], scores[row]), start=1):
        ax = axes[row, col]
        ax.imshow(plt.imread(test_records.paths[i]))
        ax.set_title(f"{s:.2f}", fontsize=7)
        ax.set_xticks([]); ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("green" if i == q else "white"); spine.set_linewidth(3)
plt.tight_layout()"""),
    ("md", r"""## 5 · Export: `encode_image` on image bytes, `encode_text` on raw strings

The SavedModel decodes and tokenises inside its graph; a client sends files and strings and compares embeddings with a dot product."""),
    ("code", r"""import tempfile

path = os.path.join(tempfile.mkdtemp(), "dual_encoder")
mmtl_tf.export.export_image_text_dual_encoder(clip, vectorizer, path, image_size=cfg["image_size"])
served = tf.saved_model.load(path)
raw = tf.constant([open(p, "rb").read() for p in test_records.paths[:8]])
img = served.signatures["encode_image"](image_bytes=raw)["embeddings"].numpy()
txt = served.signatures["encode_text"](text=tf.constant(test_records.captions[:8]))["embeddings"].numpy()
print("max |SavedModel - Keras| (images):", float(np.abs(img - embedded["image"][:8]).max()))
chosen = (img @ txt.T).argmax(1)
print("caption chosen for each of 8 images among 8:", chosen, "(right: image i's own caption, i)")
print(f"{int((chosen == np.arange(8)).sum())} of 8 right; chance 1 of 8")"""),
]


def build():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                for kind, src in CELLS]
    return nb


if __name__ == "__main__":
    sys.exit(notebook_writer.main(build, "02_shared_embedding_space.ipynb", __doc__))
