"""Cached-features benchmark of the frozen-encoder text classifier.

With a frozen encoder, only the head learns, so the encoder's output for a text
never changes. `mmtl_tf.models.encode_texts` encodes the training and
validation texts once (each batch cut to its longest text) and the head trains
on the cached vectors; the trained head sits inside the same full model. This
script measures, on this machine and in the same run, with the same model,
data and recipe:

1. the standard path: `fit` of the full model (frozen encoder + head) on
   token inputs padded to `sequence_length`, which runs the encoder forward in
   every step of every epoch (`--measured-epochs` epochs are timed; the total
   for the recipe's epoch count is that per-epoch time times the epochs);
2. the cached path: one `encode_texts` pass over the training and validation
   texts, then `fit` of the head for the recipe's epochs;

and prints the seconds per part and the speed-up, plus the test accuracy of the
full model trained each way (same architecture; they differ only by the
randomness of dropout and shuffling and by the number of epochs run).

    python bench/bench_text_cache.py [--epochs 40] [--measured-epochs 1] [--encoder minilm]

Machines are noisy: compare ratios, not seconds, and rerun when in doubt.
"""

import argparse
import json
import os
import sys
import time
import warnings

from mmtl_tf.cli import positive_int  # noqa: E402 (range-checked options)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="minilm",
                        help="'minilm' (PyPI, cached), a local folder or a preset name")
    parser.add_argument("--data", default="default", help="text-classification source")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="head epochs (default: the base recipe's)")
    parser.add_argument("--measured-epochs", type=positive_int, default=1,
                        help="epochs of the standard path actually timed")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    # Keras' notes on finite, already shuffled tf.data pipelines are expected here.
    warnings.filterwarnings("ignore", message=r".*(ran out of data|shuffle=True).*")

    import keras
    import numpy as np

    import mmtl_tf
    from mmtl_tf.tasks import common
    from mmtl_tf.tasks.text_classifier import _feature_dataset, resolve_encoder

    config = common.resolve_config("text_classifier", "base",
                                   {"encoder": args.encoder, "data": args.data})
    epochs = args.epochs or int(config["epochs"])
    mmtl_tf.runtime.configure(jit_compile="auto")
    records = {s: mmtl_tf.data.load_text_classification_records(args.data, s)
               for s in ("train", "validation", "test")}
    labels = {s: np.asarray(r.label_ids(), "int32") for s, r in records.items()}
    num_classes = len(records["train"].class_names)
    encoder_source, tokenizer_source, description = resolve_encoder(
        config, records["train"].texts)
    pre = mmtl_tf.data.BertPreprocessor(tokenizer_source, int(config["sequence_length"]))
    batch = int(config["batch_size"])

    def build():
        keras.utils.set_random_seed(0)
        model = mmtl_tf.models.build_text_classifier(
            encoder_source, num_classes=num_classes, head_units=config["head_units"],
            dropout=float(config["dropout"]), pooling=config["pooling"],
            sequence_length=int(config["sequence_length"]))
        return model, model.get_layer("bert_encoder"), model.get_layer("head")

    def timed_fit(model, train, val, n):
        mmtl_tf.training.compile_classifier(model, num_classes, float(config["learning_rate"]))
        model.fit(train.take(1), epochs=1, verbose=0)  # trace and warm up, not timed
        start = time.perf_counter()
        model.fit(train, validation_data=val, epochs=n, verbose=0)
        return time.perf_counter() - start

    # 1. Standard path: the frozen encoder runs in every step.
    model, _, _ = build()
    data = {s: mmtl_tf.data.make_text_classification_dataset(
        records[s], pre, batch_size=batch, shuffle=s == "train") for s in records}
    for _ in data["train"]:  # tokenize and fill the cache before timing
        pass
    for _ in data["validation"]:
        pass
    standard = timed_fit(model, data["train"], data["validation"], args.measured_epochs)
    per_epoch = standard / args.measured_epochs
    standard_acc = model.evaluate(data["test"], verbose=0, return_dict=True)["accuracy"]

    # 2. Cached path: encode once, then train the head only.
    model, encoder, head = build()
    start = time.perf_counter()
    feats = {s: mmtl_tf.models.encode_texts(encoder, pre, records[s].texts)
             for s in ("train", "validation")}
    encode = time.perf_counter() - start
    head_fit = timed_fit(head, _feature_dataset(feats["train"], labels["train"], batch, True, 0),
                         _feature_dataset(feats["validation"], labels["validation"], batch,
                                          False, 0), epochs)
    # The head inside the full model, on test features (equal to running the full
    # model on the test texts; tests/models/test_text_classifier.py checks that).
    test_feats = mmtl_tf.models.encode_texts(encoder, pre, records["test"].texts)
    cached_acc = float(np.mean(head.predict(test_feats, verbose=0).argmax(-1) == labels["test"]))

    standard_total = per_epoch * epochs
    cached_total = encode + head_fit
    rows = [
        ("1 epoch (train + validation)", per_epoch, encode + head_fit / epochs,
         per_epoch / (encode + head_fit / epochs)),
        (f"{epochs} epochs ({'--epochs' if args.epochs else 'the recipe'})", standard_total,
         cached_total,
         standard_total / cached_total),
        ("per extra epoch", per_epoch, head_fit / epochs, per_epoch / (head_fit / epochs)),
    ]
    print(f"\nmmtl_tf cached-features benchmark: frozen {description} + head, "
          f"{len(records['train'])} train / {len(records['validation'])} validation texts, "
          f"sequence_length {config['sequence_length']}, {os.cpu_count()} CPU cores, "
          f"jit_compile={mmtl_tf.runtime.get_jit_compile()}\n")
    header = ("measure", "encoder in every step (s)", "cached features (s)", "speed-up")
    widths = [30, 26, 20, 9]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        cells = [r[0], f"{r[1]:.1f}", f"{r[2]:.1f}", f"{r[3]:.1f}x"]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    print(f"\ncached path: {encode:.1f} s encoding once + {head_fit:.1f} s for {epochs} head "
          f"epochs. Standard path: {args.measured_epochs} epoch(s) timed, "
          f"{per_epoch:.1f} s each; the {epochs}-epoch total is extrapolated.")
    print(f"test accuracy of the full model: {standard_acc:.3f} after "
          f"{args.measured_epochs} standard epoch(s), {cached_acc:.3f} after {epochs} "
          f"cached-feature epochs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [dict(zip(["measure", "standard_s", "cached_s", "speedup"], r))
                                for r in rows],
                       "encode_s": encode, "head_fit_s": head_fit,
                       "standard_epoch_s": per_epoch, "epochs": epochs,
                       "standard_accuracy": standard_acc, "cached_accuracy": cached_acc},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
