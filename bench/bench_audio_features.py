"""Log-mel feature benchmark: the in-graph `LogMelSpectrogram` against librosa.

On the same clips (the bundled spoken-emoji sample, cropped/padded to
`--seconds`, 16 kHz) and the same settings (n_fft 512, hop 160, 64 Slaney mels,
power_to_db with an 80 dB floor), it measures clips/s of:

1. librosa, one clip at a time in a Python loop (the baseline);
2. librosa inside `tf.data` through `tf.numpy_function`, sequential
   (`num_parallel_calls=None`) and parallel (`AUTOTUNE`);
3. `mmtl_tf.layers.LogMelSpectrogram` in a `tf.data` map, one clip per call,
   sequential and parallel;
4. the same layer on batches of `--batch` clips (map after batch), sequential
   and parallel.

Every variant produces the same features (checked: relative error <= 1e-3).
It prints a table of clips/s (best of `--repeats` interleaved rounds) and
ratios to the baseline, measured in the same run. Machines are noisy: compare
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
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=16000, **SETTINGS)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T.astype("float32")


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

    reference = np.stack([librosa_log_mel(w) for w in waves[:8]])
    ours = np.asarray(layer(waves[:8]))
    rel = float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))

    def consume(ds):
        for _ in ds:
            pass

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
    for _, fn in variants:
        fn()  # warm-up (graph tracing, librosa caches)
    # Interleaved repeats: a change in the machine's load hits every variant.
    best = [float("inf")] * len(variants)
    for _ in range(repeats):
        for i, (_, fn) in enumerate(variants):
            best[i] = min(best[i], best_of(1, fn))
    return [(name, n / t) for (name, _), t in zip(variants, best)], rel, waves.shape


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results, rel, shape = run(args.clips, args.seconds, args.batch, args.repeats)
    base = results[0][1]
    print(f"\n{shape[0]} clips of {args.seconds:g} s at 16 kHz; log-mel n_fft "
          f"{SETTINGS['n_fft']}, hop {SETTINGS['hop_length']}, {SETTINGS['n_mels']} mels; "
          f"relative difference in-graph vs librosa: {rel:.1e}; {os.cpu_count()} CPUs\n")
    print(f"| {'method':<58} | {'clips/s':>8} | {'vs librosa loop':>15} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 17}|")
    for name, rate in results:
        print(f"| {name:<58} | {rate:>8.0f} | {rate / base:>14.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "relative_difference": rel}, f, indent=2)


if __name__ == "__main__":
    main()
