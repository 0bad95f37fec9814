"""Input-pipeline and train-step benchmark of the image-text fusion model.

Compares, on this machine and in the same run:

1. images/s of `mmtl_tf.data.make_image_text_dataset` against the source
   document's Keras-2 pipeline (`ImageDataGenerator.flow_from_directory`, kept in
   Keras 3 as `keras.src.legacy.preprocessing.image`) on the same folder of
   JPEGs (224×224 by default, the bundled emoji composited on white and
   upscaled), model input 224×224, batch 32: first epoch (for mmtl_tf this
   includes building the dataset: reading the captions file, adapting the
   vocabulary and the checking pass that decodes every file and fills the
   cache) and a cached epoch (ImageDataGenerator has no cache: it decodes
   again). Each is the best of `--repeats`; the first repeat, which for
   mmtl_tf also pays one-time tracing in a fresh process, is reported too;
2. captions/s of the Keras-2 `Tokenizer` + `pad_sequences` against the adapted
   `TextVectorization` on the same captions;
3. the train-step time of the document's Flatten topology (51 M parameters)
   against the default model (global average pooling, 64-wide text
   embedding) at 224×224, batch 32.

It prints a table with the ratios. Machines are noisy: compare ratios, not
seconds, and rerun when in doubt.

    python bench/bench_input_pipeline.py [--images 1621] [--source-size 224] [--steps 5]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mmtl_tf.cli import positive_int  # noqa: E402 (range-checked options)


def make_jpeg_folder(root, limit, size=224):
    """The bundled emoji images as `size` px JPEGs in class subfolders + captions.csv."""
    from mmtl_tf.data.sources import load_image_text_records

    records = load_image_text_records("default", "train")
    extra = load_image_text_records("default", "validation")
    rows = list(zip(records.paths + extra.paths, records.captions + extra.captions,
                    records.labels + extra.labels))[:limit]
    lines = ["path,caption,label,split"]
    for i, (path, caption, label) in enumerate(rows):
        folder = label.replace(" & ", "_").replace(" ", "_")
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        rgba = Image.open(path).convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(canvas, rgba).convert("RGB").resize((size, size), Image.BICUBIC)
        name = f"{folder}/{i:05d}.jpg"
        rgb.save(os.path.join(root, name), quality=90)
        lines.append(f'{name},"{caption.replace(chr(34), "")}",{label},train')
    with open(os.path.join(root, "captions.csv"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return [r[1] for r in rows]


def time_epoch(iterable, count_fn):
    start = time.perf_counter()
    n = 0
    for batch in iterable:
        n += count_fn(batch)
    return n, time.perf_counter() - start


def bench_image_data_generator(root, batch):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(rescale=1.0 / 255).flow_from_directory(
        root, target_size=(224, 224), batch_size=batch, class_mode="sparse", shuffle=True)

    def epoch():
        n, start = 0, time.perf_counter()
        for i in range(len(gen)):
            x, _ = gen[i]
            n += len(x)
        gen.on_epoch_end()
        return n, time.perf_counter() - start

    first = epoch()
    second = epoch()
    return first[0] / first[1], second[0] / second[1]


def bench_mmtl_tf(root, batch):
    import mmtl_tf

    start = time.perf_counter()
    ds = mmtl_tf.data.make_image_text_dataset(root, "train", image_size=(224, 224),
                                              batch_size=batch, sequence_length=16)
    build = time.perf_counter() - start
    n, seconds = time_epoch(ds, lambda b: int(b[1].shape[0]))
    first = n / (build + seconds)
    n, seconds = time_epoch(ds, lambda b: int(b[1].shape[0]))
    return first, n / seconds


def bench_text(captions, repeats=20):
    import keras
    from keras.src.legacy.preprocessing.text import Tokenizer

    import mmtl_tf

    texts = captions * repeats
    start = time.perf_counter()
    tok = Tokenizer(num_words=5000)
    tok.fit_on_texts(texts)
    keras.utils.pad_sequences(tok.texts_to_sequences(texts), maxlen=16, padding="post")
    legacy = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    vec = mmtl_tf.data.make_text_vectorizer(texts, vocab_size=5000, sequence_length=16)
    mmtl_tf.data.text.vectorize(vec, texts)
    ours = len(texts) / (time.perf_counter() - start)
    return legacy, ours


def bench_train_step(pooling, steps, batch=32):
    import keras

    import mmtl_tf

    keras.utils.set_random_seed(0)
    model = mmtl_tf.models.build_fusion_classifier(image_pooling=pooling)
    mmtl_tf.training.compile_classifier(model, 1)
    rng = np.random.default_rng(0)
    x = {"image": rng.integers(0, 256, (batch, 224, 224, 3)).astype("uint8"),
         "text": rng.integers(1, 5000, (batch, 100)).astype("int32")}
    y = rng.integers(0, 2, (batch,)).astype("float32")
    model.train_on_batch(x, y)  # trace / compile
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps, model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=positive_int, default=1621,
                        help="images in the JPEG folder (default: all 1,621 training and "
                             "validation emoji)")
    parser.add_argument("--source-size", type=positive_int, default=224,
                        help="side of the JPEG files (224: no resize needed; e.g. 256 "
                             "makes both pipelines resize)")
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--steps", type=positive_int, default=5, help="timed train steps per topology")
    parser.add_argument("--repeats", type=positive_int, default=2,
                        help="repeat image timings, keep best (the first repeat is also "
                             "reported on its own)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import mmtl_tf

    mmtl_tf.runtime.configure(jit_compile="auto")
    root = tempfile.mkdtemp(prefix="bench_jpeg_")
    try:
        captions = make_jpeg_folder(root, args.images, args.source_size)
        idg = [bench_image_data_generator(root, args.batch) for _ in range(args.repeats)]
        ours = [bench_mmtl_tf(root, args.batch) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    idg_first, idg_cached = max(r[0] for r in idg), max(r[1] for r in idg)
    our_first, our_cached = max(r[0] for r in ours), max(r[1] for r in ours)
    # The first repeat of each is the first in this Python process: for
    # mmtl_tf it also pays the one-time tracing of the decode and vocabulary
    # functions and fresh memory for the cache.
    idg_cold, our_cold = idg[0][0], ours[0][0]
    tok, vec = bench_text(captions)
    flat_step, flat_params = bench_train_step("flatten", args.steps, args.batch)
    avg_step, avg_params = bench_train_step("avg", args.steps, args.batch)

    rows = [
        (f"images/s, first epoch ({args.source_size}px JPEG -> 224, batch {args.batch})",
         "ImageDataGenerator", idg_first,
         "make_image_text_dataset", our_first, our_first / idg_first),
        ("images/s, first epoch, first run in the process", "ImageDataGenerator", idg_cold,
         "make_image_text_dataset", our_cold, our_cold / idg_cold),
        ("images/s, cached epoch", "ImageDataGenerator", idg_cached,
         "make_image_text_dataset", our_cached, our_cached / idg_cached),
        ("captions/s, fit vocabulary + encode", "Tokenizer+pad_sequences", tok,
         "TextVectorization", vec, vec / tok),
        (f"train step s (224x224, batch {args.batch})", f"Flatten ({flat_params:,} params)",
         flat_step,
         f"avg pooling ({avg_params:,} params)", avg_step, flat_step / avg_step),
    ]
    print(f"\nmmtl_tf input pipeline benchmark: {args.images} JPEGs, "
          f"jit_compile={mmtl_tf.runtime.get_jit_compile()}, {os.cpu_count()} CPU cores\n")
    header = ("measure", "baseline", "value", "mmtl_tf", "value", "ratio (mmtl_tf better if > 1)")
    widths = [52, 30, 9, 36, 9, 10]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        cells = [r[0], r[1], f"{r[2]:.3g}", r[3], f"{r[4]:.3g}", f"{r[5]:.2f}x"]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(zip(["measure", "baseline", "baseline_value", "ours",
                                 "ours_value", "ratio"], r)) for r in rows], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
