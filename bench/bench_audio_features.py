"""Log-mel feature benchmark: the in-graph `LogMelSpectrogram` against librosa.

On the same clips (the bundled spoken-emoji sample, cropped/padded to
`--seconds`, 16 kHz) and the same settings (n_fft 512, hop 160, 64 Slaney mels,
power_to_db with an 80 dB floor), it measures clips/s of:

1. librosa, one clip at a time in a Python loop (the baseline: what most
   tutorials do);
2. librosa on batches of `--batch` clips, one call per batch (librosa takes a
   (clips, samples) array; the fair comparison for the batched layer below);
3. librosa inside `tf.data` through `tf.numpy_function`, sequential
   (`num_parallel_calls=None`) and parallel (`AUTOTUNE`);
4. `mmtl_tf.layers.LogMelSpectrogram` in a `tf.data` map, one clip per call,
   sequential and parallel;
5. the same layer on batches of `--batch` clips (map after batch), sequential
   and parallel.

Every variant's features are compared with librosa's per-clip features of all
the clips before timing (the run stops if the relative error is above 1e-3).
It prints a table of clips/s (best of `--repeats` interleaved rounds) and
ratios to both librosa baselines, measured in the same run. Machines are noisy: compare
ratios, not seconds, and rerun when in doubt; on a loaded machine librosa's
multi-threaded BLAS suffers most.

    python bench/bench_audio_features.py [--clips 512] [--seconds 2.0] [--batch 32] [--repeats 3]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mmtl_tf.cli import positive_int, positive_float  # noqa: E402 (range-checked options)

SETTINGS = dict(n_fft=512, hop_length=160, n_mels=64, fmin=20.0)


def load_clips(n, seconds):
    from mmtl_tf.data import crop_or_pad, load_audio_text_records, read_audio

    paths = []
    for split in ("train", "validation", "test"):
        paths += load_audio_text_records("default", split).paths
    length = int(seconds * 16000)
    return np.stack([crop_or_pad(read_audio(p)[0], length).numpy()
                     for p in paths[:n]]).astype("float32")


def librosa_log_mel(y):
    """(samples,) → (frames, mels); a (clips, samples) batch → (clips, frames, mels)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=16000, **SETTINGS)
    if y.ndim == 1:
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T.astype("float32")
    # power_to_db's 80 dB floor is taken per clip, as in the one-clip call.
    return np.stack([librosa.power_to_db(m, ref=1.0, amin=1e-10, top_db=80.0).T
                     for m in mel]).astype("float32")


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(clips, seconds, batch, repeats):
    import tensorflow as tf

    from mmtl_tf.layers import LogMelSpectrogram

    waves = load_clips(clips, seconds)
    n = len(waves)
    layer = LogMelSpectrogram(sample_rate=16000, **SETTINGS)
    frames = layer.num_frames(waves.shape[1])

    def consume(ds):
        return [x for x in ds]

    def tf_librosa(parallel):
        fn = lambda y: tf.ensure_shape(  # noqa: E731
            tf.numpy_function(librosa_log_mel, [y], tf.float32), [frames, SETTINGS["n_mels"]])
        return tf.data.Dataset.from_tensor_slices(waves).map(
            fn, num_parallel_calls=parallel).batch(batch).prefetch(2)

    def tf_layer(parallel, batched):
        ds = tf.data.Dataset.from_tensor_slices(waves)
        if batched:
            return ds.batch(batch).map(layer, num_parallel_calls=parallel).prefetch(2)
        return ds.map(lambda y: layer(y[None])[0], num_parallel_calls=parallel) \
            .batch(batch).prefetch(2)

    auto = tf.data.AUTOTUNE
    variants = [
        ("librosa, Python loop (baseline)", lambda: [librosa_log_mel(w) for w in waves]),
        (f"librosa, one call per batch of {batch}",
         lambda: [librosa_log_mel(waves[i:i + batch]) for i in range(0, n, batch)]),
        ("librosa in tf.data (numpy_function), sequential", lambda: consume(tf_librosa(None))),
        ("librosa in tf.data (numpy_function), parallel", lambda: consume(tf_librosa(auto))),
        ("LogMelSpectrogram per clip in tf.data, sequential",
         lambda: consume(tf_layer(None, False))),
        ("LogMelSpectrogram per clip in tf.data, parallel",
         lambda: consume(tf_layer(auto, False))),
        (f"LogMelSpectrogram per batch of {batch} in tf.data, sequential",
         lambda: consume(tf_layer(None, True))),
        (f"LogMelSpectrogram per batch of {batch} in tf.data, parallel",
         lambda: consume(tf_layer(auto, True))),
    ]
    # Warm-up (graph tracing, librosa caches), and every variant's features
    # against librosa's per clip.
    reference = None
    rel = 0.0
    for name, fn in variants:
        features = np.concatenate([np.asarray(x).reshape(-1, frames, SETTINGS["n_mels"])
                                   for x in fn()])
        if reference is None:
            reference = features
            continue
        error = float(np.linalg.norm(features - reference) / np.linalg.norm(reference))
        if features.shape != reference.shape or not error <= 1e-3:
            raise SystemExit(f"{name}: features differ from librosa's per clip "
                             f"(shape {features.shape} vs {reference.shape}, "
                             f"relative error {error:.1e})")
        rel = max(rel, error)
    # Interleaved repeats: a change in the machine's load hits every variant.
    best = [float("inf")] * len(variants)
    for _ in range(repeats):
        for i, (_, fn) in enumerate(variants):
            best[i] = min(best[i], best_of(1, fn))
    return [(name, n / t) for (name, _), t in zip(variants, best)], rel, waves.shape


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=positive_int, default=512)
    parser.add_argument("--seconds", type=positive_float, default=2.0)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results, rel, shape = run(args.clips, args.seconds, args.batch, args.repeats)
    loop, batched = results[0][1], results[1][1]
    print(f"\n{shape[0]} clips of {args.seconds:g} s at 16 kHz; log-mel n_fft "
          f"{SETTINGS['n_fft']}, hop {SETTINGS['hop_length']}, {SETTINGS['n_mels']} mels; "
          f"largest relative difference of a variant vs librosa per clip: {rel:.1e}; "
          f"{os.cpu_count()} CPUs\n")
    print(f"| {'method':<58} | {'clips/s':>8} | {'vs librosa loop':>15} "
          f"| {'vs librosa batched':>18} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 17}|{'-' * 20}|")
    for name, rate in results:
        print(f"| {name:<58} | {rate:>8.0f} | {rate / loop:>14.2f}x "
              f"| {rate / batched:>17.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "relative_difference": rel}, f, indent=2)


if __name__ == "__main__":
    main()
