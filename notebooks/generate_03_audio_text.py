"""Writes notebooks/03_audio_text.ipynb (unexecuted) with nbformat.

    python notebooks/generate_03_audio_text.py

Edit the cells here, not in the .ipynb. The test suite executes the notebook
in its small mode (MMTL_TF_NOTEBOOK_SMALL=1).
"""

import sys

import notebook_writer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


CELLS = [
    ("md", """\
# 03 · Audio and text: preprocessing, a log-mel front end, audio–text fusion

Section 3.1.2 of the source document learns from **audio and text together**
(spoken captions, transcripts) after preprocessing the audio: *cropping*
(cut the silence, bring every clip to one length), *compression* of the dynamic
range (mu-law, log) and *filtering* (pre-emphasis, band-pass). This notebook
shows each step on real files, the log-mel front end that turns waveforms
into the images a CNN reads, and an audio–text fusion classifier — the
audio counterpart of notebook 01's image–text model.

**The data is synthetic speech.** The bundled sample
(`mmtl_tf/data/default_audio/`) holds the names of the bundled emoji spoken by
six espeak-ng voices (16 kHz, Ogg/Opus, 5.9 MB), made by
`data_prep/build_spoken_emoji.py`. Four voices are used for training; two
are *held out* and occur only in the test split, and the test items (emoji
names) are never spoken in training: the test split measures new items in
known voices and new items in new voices. Real speech (Tux Paint's recorded
stamp descriptions, 12 languages) is built by `data_prep/build_tuxpaint_speech.py`
and goes through the same pipeline.

Set `MMTL_TF_NOTEBOOK_SMALL=1` for the quick version the tests run (the
tiny recipes and a few epochs: the numbers then mean nothing, and may sit
at or below chance). The prose below describes what the base recipe gives."""),
    ("code", """\
import os
import warnings

# Before TensorFlow loads: hides its C++ error lines, harmless here ("failed
# call to cuInit" without a GPU; oneDNN falling back without AVX-512). Two
# start-up notes (oneDNN custom operations, no CUDA drivers) still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Audio, display

import mmtl_tf
from mmtl_tf.data import audio as steps

# Keras notes that a finite tf.data pipeline "ran out of data" after each pass.
warnings.filterwarnings("ignore", message=".*ran out of data.*")
SMALL = os.environ.get("MMTL_TF_NOTEBOOK_SMALL") == "1"
recipe = mmtl_tf.recipes.load_recipe("audio_text_fusion", "tiny" if SMALL else "base")
keras.utils.set_random_seed(recipe["seed"])
RATE = recipe["sample_rate"]
recipe"""),
    ("md", """\
## The bundled spoken-emoji sample

Each row names the audio file, the spoken text (`caption`), the emoji category
(`label`), the voice and whether that voice is held out."""),
    ("code", """\
records = {s: mmtl_tf.data.load_audio_text_records("default", s)
           for s in ("train", "validation", "test")}
for split, recs in records.items():
    groups = {g: recs.voice_groups.count(g) for g in sorted(set(recs.voice_groups))}
    print(f"{split:<10} {len(recs):>5} clips, {len(set(recs.items)):>4} items, "
          f"voices {sorted(set(recs.voices))}, groups {groups}")
test = records["test"]
item = test.items[0]
same_item = [i for i, it in enumerate(test.items) if it == item]
for i in same_item:
    print(f"{test.voices[i]:<18} {test.voice_groups[i]:<8} {test.captions[i]!r} [{test.labels[i]}]")
    display(Audio(mmtl_tf.data.read_audio(test.paths[i])[0], rate=RATE))"""),
    ("md", """\
## The preprocessing steps, one at a time

`mmtl_tf.data.audio` has one function per step. Loading (`read_audio` /
`load_audio`) decodes WAV, FLAC or Ogg with soundfile, averages the channels
to mono and resamples to the target rate with librosa. Trimming uses
`librosa.effects.trim` through `tf.numpy_function`; the other steps are
TensorFlow ops, so they run in `tf.data` and inside models alike. Each row
shows the waveform and its log-mel spectrogram (computed by the in-graph
front end, `mmtl_tf.layers.LogMelSpectrogram`)."""),
    ("code", """\
path = records["train"].paths[3]
raw, _ = mmtl_tf.data.read_audio(path)
trimmed = steps.trim_silence(raw).numpy()
length = int(recipe["clip_seconds"] * RATE)
stages = {
    "loaded (16 kHz mono)": raw,
    "trim silence (librosa, top_db=40)": trimmed,
    f"crop / pad to {recipe['clip_seconds']:g} s (centre)": steps.crop_or_pad(trimmed, length).numpy(),
    "pre-emphasis (0.97)": steps.pre_emphasis(steps.crop_or_pad(trimmed, length)).numpy(),
    "band-pass 300-3400 Hz": steps.band_pass(steps.crop_or_pad(trimmed, length), RATE, 300, 3400).numpy(),
    "mu-law compression (mu=255)": steps.mu_law_compress(steps.crop_or_pad(trimmed, length)).numpy(),
}
front_end = mmtl_tf.layers.LogMelSpectrogram(sample_rate=RATE, n_mels=64)
fig, axes = plt.subplots(len(stages), 2, figsize=(12, 2.1 * len(stages)),
                         gridspec_kw={"width_ratios": [1, 1.3]})
for (name, y), (ax_w, ax_m) in zip(stages.items(), axes):
    ax_w.plot(np.arange(len(y)) / RATE, y, lw=0.5)
    ax_w.set_title(name, fontsize=9, loc="left")
    ax_w.set_xlim(0, max(len(raw), length) / RATE)
    mel = front_end(y[None].astype("float32"))[0].numpy()
    ax_m.imshow(mel.T, origin="lower", aspect="auto", cmap="magma",
                extent=[0, len(y) / RATE, 0, mel.shape[1]])
    ax_m.set_ylabel("mel band", fontsize=8)
axes[-1][0].set_xlabel("seconds"); axes[-1][1].set_xlabel("seconds")
plt.tight_layout()
print(f"{len(raw)} samples loaded, {len(trimmed)} after trimming")
display(Audio(stages["band-pass 300-3400 Hz"], rate=RATE))"""),
    ("md", """\
What each step does to the numbers: trimming removes the trailing pause
espeak-ng adds; crop/pad centres the word in a fixed window so clips batch;
pre-emphasis (y[t] = x[t] − 0.97·x[t−1]) lifts the high frequencies, where
consonants live; the band-pass keeps telephone bandwidth; mu-law compression
(sign(x)·ln(1 + 255|x|)/ln 256) raises quiet samples towards loud ones —
visible as a much denser waveform and a brighter spectrogram.

## The log-mel front end matches librosa

`LogMelSpectrogram` is built from `keras.ops` (STFT, mel matrix, log). With
the same settings as librosa (Slaney mel scale and normalisation, centre
zero-padding, periodic Hann window, `power_to_db` with an 80 dB floor) the
results agree to about 1e-7 relative error; the tests check ≤ 1e-3 on the
bundled clips and on Tux Paint's real recordings."""),
    ("code", """\
import librosa

y = stages["loaded (16 kHz mono)"]
ours = front_end(y[None])[0].numpy()
ref = librosa.power_to_db(librosa.feature.melspectrogram(
    y=y, sr=RATE, n_fft=512, hop_length=160, n_mels=64), ref=1.0, top_db=80.0).T
print("shape", ours.shape, "relative error",
      float(np.linalg.norm(ours - ref) / np.linalg.norm(ref)),
      "max |dB difference|", float(np.abs(ours - ref).max()))"""),
    ("md", """\
## tf.data pipeline

`make_audio_text_dataset` loads and trims every clip once in a parallel
`map` (checking each file: a corrupt, empty, silent, too short or NaN-filled
file raises `mmtl_tf.DataError` naming it), caches the trimmed waveforms,
then crops/pads (random crops for training), applies the optional filtering
and compression, and batches. The captions are vectorised with a vocabulary
adapted on the training captions."""),
    ("code", """\
vectorizer = mmtl_tf.data.make_text_vectorizer(
    records["train"].captions, vocab_size=recipe["vocab_size"],
    sequence_length=recipe["sequence_length"])
kw = dict(text_vectorizer=vectorizer, clip_seconds=recipe["clip_seconds"],
          batch_size=recipe["batch_size"], seed=recipe["seed"])
data = {s: mmtl_tf.data.make_audio_text_dataset("default", s, **kw)
        for s in ("train", "validation")}
tests = {g: mmtl_tf.data.make_audio_text_dataset("default", "test", voice_group=g, **kw)
         for g in ("train", "heldout")}
x, y = next(iter(data["validation"]))
print({k: (v.shape, v.dtype.name) for k, v in x.items()}, y.shape)"""),
    ("md", """\
## Audio–text fusion classifier

`build_audio_text_fusion_classifier`: an `AudioEncoder` (log-mel front end →
per-clip normalisation → Conv2D/BatchNorm/ReLU/MaxPool blocks → the recipe's
`audio_pooling`, `"time_avg"`: an average over time that keeps the mel bands
as separate features) and the `TextEncoder` (Embedding → LSTM) of notebook 01,
concatenated, then Dense → softmax over the 9 categories. The model's audio
input is the raw float32 waveform."""),
    ("code", """\
num_samples = int(recipe["clip_seconds"] * RATE)
num_classes = len(records["train"].class_names)
model = mmtl_tf.models.build_audio_text_fusion_classifier(
    num_samples=num_samples, sample_rate=RATE, vocab_size=recipe["vocab_size"],
    sequence_length=recipe["sequence_length"], embedding_dim=recipe["embedding_dim"],
    lstm_units=recipe["lstm_units"], n_mels=recipe["n_mels"],
    conv_filters=recipe["conv_filters"], audio_pooling=recipe["audio_pooling"],
    hidden_units=recipe["hidden_units"],
    fusion_dropout=recipe["fusion_dropout"], num_classes=num_classes)
mmtl_tf.training.compile_classifier(model, num_classes, learning_rate=recipe["learning_rate"])
history, seconds = mmtl_tf.training.fit(model, data["train"], data["validation"],
                                        epochs=recipe["epochs"], verbose=2)
print(f"{model.count_params():,} parameters, {seconds:.0f} s")"""),
    ("code", """\
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, name in zip(axes, ("loss", "accuracy")):
    ax.plot(history[name], marker="o", label="train")
    ax.plot(history[f"val_{name}"], marker="o", label="validation")
    ax.set_title(name); ax.set_xlabel("epoch"); ax.legend()
plt.tight_layout()
majority = mmtl_tf.training.majority_class_accuracy(
    records["train"].label_ids(), records["test"].label_ids())
for group, ds in tests.items():
    acc = model.evaluate(ds, verbose=0, return_dict=True)["accuracy"]
    print(f"test, {group:<7} voices: accuracy {acc:.3f}  (majority class {majority:.3f})")"""),
    ("md", """\
Which branch does the work? Blank one input at test time (silence for the
audio, all-padding for the text) and measure again."""),
    ("code", """\
import tensorflow as tf

def blank(ds, key):
    return ds.map(lambda x, y: ({**x, key: tf.zeros_like(x[key])}, y))

for group, ds in tests.items():
    accs = {k: model.evaluate(blank(ds, k), verbose=0, return_dict=True)["accuracy"]
            for k in ("audio", "text")}
    predicted = np.argmax(model.predict(blank(ds, "text"), verbose=0), axis=1)
    print(f"test, {group:<7} voices: text only (audio blanked) {accs['audio']:.3f}, "
          f"audio only (text blanked) {accs['text']:.3f}, predicting "
          f"{len(np.unique(predicted))} of {num_classes} classes with the text blanked")"""),
    ("md", """\
The transcript makes this easy: most of the accuracy comes from the text
branch. Blanked text (all padding) is an input the model never saw in
training: it then predicts only a few of the classes, so "text blanked"
measures that collapse rather than what the audio branch knows; the
audio-only classifier below is the fair measure of the audio. The audio-only classifier below (the same `AudioEncoder` with a
softmax head) has to infer the category from the sound of a name it never
heard, in a voice it may never have heard — a much harder task (with the
base recipe it reached 0.46–0.48 in the training voices and 0.32–0.33 in the
held-out ones over two runs, against 0.20 for the majority class: this
figure moves by a few hundredths between runs). Its trained file can seed other audio models:
`AudioEncoder(weights="audio_classifier.keras")`."""),
    ("code", """\
audio_only = lambda ds: ds.map(lambda x, y: ({"audio": x["audio"]}, y))
audio_model = mmtl_tf.models.build_audio_classifier(
    num_samples=num_samples, sample_rate=RATE, num_classes=num_classes,
    n_mels=recipe["n_mels"], conv_filters=recipe["conv_filters"],
    pooling=recipe["audio_pooling"], dropout=0.3)
mmtl_tf.training.compile_classifier(audio_model, num_classes,
                                    learning_rate=recipe["learning_rate"])
mmtl_tf.training.fit(audio_model, audio_only(data["train"]), audio_only(data["validation"]),
                     epochs=recipe["audio_only_epochs"], verbose=0)
for group, ds in tests.items():
    acc = audio_model.evaluate(audio_only(ds), verbose=0, return_dict=True)["accuracy"]
    print(f"audio only, test, {group:<7} voices: accuracy {acc:.3f}  (majority class {majority:.3f})")
import tempfile
clf_path = os.path.join(tempfile.mkdtemp(), "audio_classifier.keras")
audio_model.save(clf_path)
encoder = mmtl_tf.encoders.AudioEncoder(
    num_samples=num_samples, sample_rate=RATE, n_mels=recipe["n_mels"],
    conv_filters=recipe["conv_filters"], pooling=recipe["audio_pooling"],
    weights=clf_path, trainable="frozen")
print("pretrained encoder output", encoder(x["audio"][:2]).shape)"""),
    ("md", """\
## Raw waveforms in, predictions out

The front end is a layer of the model, so the model (and a SavedModel
exported from it) takes float32 waveforms at 16 kHz — here a file that never
went through the dataset pipeline, only loaded, trimmed and padded."""),
    ("code", """\
wave = steps.crop_or_pad(steps.trim_silence(steps.load_audio(test.paths[-1])), num_samples)
tokens = vectorizer([test.captions[-1]])
probs = model.predict({"audio": wave[None], "text": tokens}, verbose=0)[0]
names = records["train"].class_names
print(repr(test.captions[-1]), "->", names[int(np.argmax(probs))],
      f"(p={probs.max():.2f}); true: {test.labels[-1]}")"""),
    ("md", """\
## A shared space: the audio–text dual encoder

The second half of section 3.1.2: put audio and text in **one embedding
space**, so that a spoken name lands next to its written form. This is the
CLIP recipe of notebook 02 with an audio tower in place of the image tower
(CLAP, Elizalde et al. 2023): `build_audio_text_dual_encoder` wraps the same
`DualEncoder` — an `AudioEncoder` and a `TextEncoder`, each followed by a
linear projection and L2 normalisation, trained with the symmetric CLIP
loss on the (clip, caption) pairs of a batch. The captions are tokenised by
**characters** (`split="character"`): the test names are never spoken in
training, and a word vocabulary would map most of their words to the
out-of-vocabulary token, while their letters are all known (with words, the
base recipe reached about a quarter of the R@10: see the README's audio
section)."""),
    ("code", """\
from mmtl_tf.tasks import audio_text

dual_recipe = mmtl_tf.recipes.load_recipe("audio_text", "tiny" if SMALL else "base")
keras.utils.set_random_seed(dual_recipe["seed"])
char_vectorizer = mmtl_tf.data.make_text_vectorizer(
    records["train"].captions, vocab_size=dual_recipe["vocab_size"],
    sequence_length=dual_recipe["sequence_length"], split="character")
print("character vocabulary:", "".join(str(t) for t in char_vectorizer.get_vocabulary()[2:]))
pairs = {s: mmtl_tf.data.make_audio_text_dataset(
            "default", s, text_vectorizer=char_vectorizer,
            clip_seconds=dual_recipe["clip_seconds"], batch_size=dual_recipe["batch_size"],
            seed=dual_recipe["seed"], with_labels=False, shuffle=(s == "train"),
            drop_remainder=(s == "train"))
         for s in ("train", "validation")}
dual = audio_text.build_model(dual_recipe)   # build_audio_text_dual_encoder(...) with the recipe
dual.compile(optimizer=keras.optimizers.AdamW(dual_recipe["learning_rate"],
                                              weight_decay=dual_recipe["weight_decay"]))
dual_history, dual_seconds = mmtl_tf.training.fit(
    dual, pairs["train"], pairs["validation"], epochs=dual_recipe["epochs"], verbose=2)
print(f"{dual.count_params():,} parameters, {dual_seconds:.0f} s, "
      f"logit scale {dual.logit_scale_value():.1f}")
plt.figure(figsize=(5, 3))
plt.plot(dual_history["loss"], marker="o", label="train")
plt.plot(dual_history["val_loss"], marker="o", label="validation")
plt.title("CLIP loss"); plt.xlabel("epoch"); plt.legend(); plt.tight_layout()"""),
    ("md", """\
**Retrieval on held-out items**, separately for the training voices (285
clips, one per test name) and the held-out voices (570 clips: each test name
in both new voices, so each caption has two correct clips; the chance
levels count them). A caption said by both voices is one item: each clip is
ranked against the 285 distinct captions, not against 570 rows in which
every wrong caption would come twice. Names follow OpenCLIP:
`audio_to_text_R@1` is the share of clips whose own caption is the nearest
caption."""),
    ("code", """\
retrieval = audio_text.retrieval(dual, dual_recipe, char_vectorizer, "test")
print(audio_text.format_metrics({"test": retrieval}))"""),
    ("md", """\
Clips in a held-out voice, with the captions nearest to them: a good, a
typical and a poor one (the clips whose rank is nearest the 10th, 50th and
90th percentile of all held-out clips' ranks)."""),
    ("code", """\
held = mmtl_tf.data.load_audio_text_records("default", "test", voice_group="heldout")
captions = sorted(set(held.captions))
text_emb = dual.encode_text(char_vectorizer(captions)).numpy()
length = audio_text.num_samples(dual_recipe)
waves = [steps.crop_or_pad(steps.trim_silence(steps.load_audio(p)), length) for p in held.paths]
audio_emb = np.concatenate([dual.encode_audio(tf.stack(waves[i:i + 64])).numpy()
                            for i in range(0, len(waves), 64)])
scores = audio_emb @ text_emb.T
right = scores[np.arange(len(held.paths)), [captions.index(c) for c in held.captions]]
ranks = np.sum(scores >= right[:, None], axis=1)  # ties count against the model
print(f"rank of the right caption among {len(captions)}: median {np.median(ranks):.0f} "
      f"over {len(ranks)} clips")
for q in (10, 50, 90):
    i = int(np.argmin(np.abs(ranks - np.percentile(ranks, q))))
    top = np.argsort(-scores[i])[:3]
    print(f"{q}th percentile, {held.voices[i]}: {held.captions[i]!r} (rank {ranks[i]}) -> "
          + ", ".join(f"{captions[j]!r} {scores[i, j]:.2f}" for j in top))
    display(Audio(waves[i].numpy(), rate=RATE))"""),
    ("md", """\
**Export.** `mmtl_tf.export.export_audio_text_dual_encoder` writes a
SavedModel with `encode_audio(waveform)` — float32 (N, samples), mono,
**at 16 kHz** (the rate `audio_config()` reports), clips of different lengths
zero-padded at the end; silence is trimmed and the clip centre-cropped
in the graph exactly as in evaluation — and `encode_text(text)` on raw
strings. (`mmtl-tf train audio-text` / `evaluate` / `export` do all of this
from the command line.)"""),
    ("code", """\
saved_dir = os.path.join(tempfile.mkdtemp(), "audio_text_saved_model")
mmtl_tf.export.export_audio_text_dual_encoder(dual, char_vectorizer, saved_dir,
                                              sample_rate=RATE)
served = tf.saved_model.load(saved_dir)
raw = [mmtl_tf.data.read_audio(p, RATE)[0] for p in held.paths[:2]]
batch = np.zeros((2, max(map(len, raw))), "float32")
for i, r in enumerate(raw):
    batch[i, :len(r)] = r
a = served.signatures["encode_audio"](waveform=tf.constant(batch))["embeddings"].numpy()
t = served.signatures["encode_text"](text=tf.constant(held.captions[:2]))["embeddings"].numpy()
print(sorted(served.signatures), "similarity of matched pairs:", np.round(np.sum(a * t, 1), 3))"""),
    ("md", """\
**Honest reading.** With the base recipe, recall is far above chance, in the
new voices as well as in the known ones, but low in absolute terms: the
tower has to spell out a name it never heard from 1,334 synthetic clips, and a 285-way choice among
emoji names (many sharing words such as *flag*, *face*, *button*) is
fine-grained. Real speech (Tux Paint's recorded descriptions,
`data_prep/build_tuxpaint_speech.py`) goes through the same functions, but
English has only 65 recordings — too few to train on."""),
]


def build():
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


if __name__ == "__main__":
    sys.exit(notebook_writer.main(build, "03_audio_text.ipynb", __doc__))
