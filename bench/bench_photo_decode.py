"""Decoding photos for a 224 px model: scaled while decoding against whole.

`mmtl_tf.data.preprocess_image_bytes` decodes a JPEG file of 64 KiB or more
whose shorter side is at least twice the model's larger side at 1/2, 1/4 or
1/8 of its size (libjpeg scales in the DCT), then crops and resizes. This
benchmark times, on the same folder of photo-sized JPEGs and in the same
run:

1. that pipeline (`tf.data` map over the files, `num_parallel_calls=AUTOTUNE`);
2. the same pipeline decoding every file whole (`decode_upright` without
   `min_side`, then the same crop and resize): what mmtl_tf did before;
3. Keras' `load_img(target_size=...)` (Pillow, whole decoding, one file at a
   time, as ImageDataGenerator loads them).

The photos are the bundled emoji, upscaled with noise added (about the file
size of a phone photo of that resolution). It prints images/s and the ratios
to (2) and (3), and how far (1)'s pixels are from (2)'s. Compare ratios,
not seconds: machines are noisy.

    python bench/bench_photo_decode.py [--photos 48] [--width 4032 --height 3024] [--size 224]
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


def make_photos(root, count, width, height, seed=0):
    """`count` JPEG files of `width`×`height` in `root` (quality 90)."""
    from mmtl_tf.data.sources import load_image_text_records

    paths = load_image_text_records("default", "train").paths[:count]
    rng = np.random.default_rng(seed)
    out = []
    for i, path in enumerate(paths):
        rgba = Image.open(path).convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(canvas, rgba).convert("RGB").resize(
            (width, height), Image.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.int16)
        pixels = pixels + rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
        name = os.path.join(root, f"{i:04d}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(name, quality=90)
        out.append(name)
    return out


def _pipeline(paths, load):
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices(paths)
            .map(lambda p: load(tf.io.read_file(p)), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(16))


def _time_dataset(ds):
    start = time.perf_counter()
    images = [batch.numpy() for batch in ds]
    return time.perf_counter() - start, np.concatenate(images)


def run(paths, size, repeats):
    import keras

    from mmtl_tf.data.image import decode_upright, preprocess_image_bytes, resize_and_crop
    from mmtl_tf.data.image import _to_rgb

    def scaled(data):
        return preprocess_image_bytes(data, (size, size))

    def whole(data):
        return resize_and_crop(_to_rgb(decode_upright(data)), (size, size))

    timings = {"scaled": [], "whole": [], "load_img": []}
    pixels = {}
    for _ in range(repeats):
        for name, load in (("scaled", scaled), ("whole", whole)):
            seconds, pixels[name] = _time_dataset(_pipeline(paths, load))
            timings[name].append(seconds)
        start = time.perf_counter()
        for path in paths:
            np.asarray(keras.utils.load_img(path, target_size=(size, size)))
        timings["load_img"].append(time.perf_counter() - start)
    rates = {k: len(paths) / min(v) for k, v in timings.items()}
    difference = float(np.abs(pixels["scaled"].astype(int) - pixels["whole"]).mean())
    return rates, difference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=positive_int, default=48)
    parser.add_argument("--width", type=positive_int, default=4032)
    parser.add_argument("--height", type=positive_int, default=3024)
    parser.add_argument("--size", type=positive_int, default=224, help="the model's side")
    parser.add_argument("--repeats", type=positive_int, default=3, help="keep the best of these")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    root = tempfile.mkdtemp(prefix="bench_photos_")
    try:
        paths = make_photos(root, args.photos, args.width, args.height)
        mean_bytes = sum(os.path.getsize(p) for p in paths) / len(paths)
        rates, difference = run(paths, args.size, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{len(paths)} JPEGs of {args.width}x{args.height} (mean {mean_bytes / 1024:.0f} KiB) "
          f"-> {args.size}x{args.size}, best of {args.repeats}")
    rows = [("mmtl_tf, scaled while decoding", rates["scaled"]),
            ("mmtl_tf, decoded whole (before)", rates["whole"]),
            ("keras.utils.load_img (Pillow, whole)", rates["load_img"])]
    print(f"{'pipeline':38s} {'images/s':>9s} {'vs whole':>9s} {'vs load_img':>11s}")
    for name, rate in rows:
        print(f"{name:38s} {rate:9.1f} {rate / rates['whole']:8.2f}x "
              f"{rate / rates['load_img']:10.2f}x")
    print(f"mean absolute pixel difference, scaled vs whole: {difference:.2f} (of 255)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rates": rates, "mean_abs_difference": difference,
                       "photos": len(paths), "width": args.width, "height": args.height,
                       "size": args.size, "mean_bytes": mean_bytes}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
