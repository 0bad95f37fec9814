"""Accuracy and size of the fusion classifier's image poolings on the bundled data.

Trains `build_fusion_classifier` with `image_pooling="avg"` (the default) and
`"flatten"` (the source document's topology) with the same settings and seeds on
the bundled emoji sample, keeps the epoch with the best validation loss, and
prints held-out test accuracy (mean over seeds), parameter counts and their
ratio, next to the majority-class baseline.

    python bench/bench_fusion_pooling.py --image-size 224 --seeds 0 1 2
    python bench/bench_fusion_pooling.py --image-size 64 --seeds 0 1 2
    python bench/bench_fusion_pooling.py --poolings avg --embedding-dim 128

Both are built with the builder's defaults apart from the recipe settings
below, so each gets its default text embedding: 128 wide for "flatten" (the
document's), 64 for "avg". At 224×224 the "flatten" model is exactly the
document's (51,162,241 parameters for one sigmoid output) and the default
has 363,137 (140.9× fewer). The bundled data has 9 classes, so the models
trained and counted here have 9 softmax outputs: 8 × (64 + 1) = 520
parameters more (51,162,761 and 363,657, 140.7×).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mmtl_tf.cli import positive_int, positive_float, seed_int  # noqa: E402 (range-checked options)


def load_arrays(size, vectorizer):
    import mmtl_tf

    out = {}
    for split in ("train", "validation", "test"):
        ds = mmtl_tf.data.make_image_text_dataset(
            "default", split, text_vectorizer=vectorizer, image_size=(size, size),
            batch_size=100000, shuffle=False)
        x, y = next(iter(ds))
        out[split] = ({k: v.numpy() for k, v in x.items()}, y.numpy())
    return out


def train_one(pooling, seed, data, size, args):
    import keras

    import mmtl_tf

    keras.utils.set_random_seed(seed)
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(size, size, 3), vocab_size=args.vocab_size,
        sequence_length=args.sequence_length, num_classes=9, image_pooling=pooling,
        embedding_dim=args.embedding_dim)
    mmtl_tf.training.compile_classifier(model, 9, learning_rate=args.learning_rate)
    best = keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.epochs,
                                         restore_best_weights=True)
    (xtr, ytr), (xva, yva), (xte, yte) = data["train"], data["validation"], data["test"]
    model.fit(xtr, ytr, validation_data=(xva, yva), epochs=args.epochs,
              batch_size=args.batch_size, callbacks=[best], verbose=0)
    accuracy = model.evaluate(xte, yte, verbose=0, return_dict=True)["accuracy"]
    return accuracy, model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=positive_int, default=224)
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--learning-rate", type=positive_float, default=3e-3)
    parser.add_argument("--vocab-size", type=positive_int, default=5000)
    parser.add_argument("--sequence-length", type=positive_int, default=16)
    parser.add_argument("--poolings", nargs="+", default=["avg", "flatten"])
    parser.add_argument("--embedding-dim", type=positive_int, default=None,
                        help="text embedding width for every pooling (default: the "
                             "builder's, 128 for flatten and 64 for avg or max)")
    args = parser.parse_args(argv)

    import mmtl_tf
    from mmtl_tf.data.sources import load_image_text_records

    mmtl_tf.runtime.configure(jit_compile="auto")
    train = load_image_text_records("default", "train")
    test = load_image_text_records("default", "test")
    vectorizer = mmtl_tf.data.make_text_vectorizer(
        train.captions, vocab_size=args.vocab_size, sequence_length=args.sequence_length)
    data = load_arrays(args.image_size, vectorizer)
    majority = mmtl_tf.training.majority_class_accuracy(train.label_ids(), test.label_ids())
    results = {}
    for pooling in args.poolings:
        runs = [train_one(pooling, seed, data, args.image_size, args) for seed in args.seeds]
        results[pooling] = ([r[0] for r in runs], runs[0][1])
        print(f"{pooling}: test accuracy per seed {[round(a, 3) for a in results[pooling][0]]}",
              flush=True)
    print(f"\nfusion classifier, bundled emoji sample, {args.image_size}x{args.image_size} px, "
          f"{args.epochs} epochs, seeds {args.seeds}, embedding_dim "
          f"{args.embedding_dim or 'of the builder (flatten 128, avg 64)'}; "
          f"majority class {majority:.3f}\n")
    print(f"{'image_pooling':14s}{'params':>14s}{'test accuracy (mean ± sd)':>30s}")
    for pooling, (accs, params) in results.items():
        print(f"{pooling:14s}{params:>14,d}{np.mean(accs):>22.3f} ± {np.std(accs):.3f}")
    if {"avg", "flatten"} <= set(results):
        ratio = results["flatten"][1] / results["avg"][1]
        diff = np.mean(results["avg"][0]) - np.mean(results["flatten"][0])
        print(f"\nflatten / avg parameters: {ratio:.1f}x; avg - flatten accuracy: {diff:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
