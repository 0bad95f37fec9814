"""Head-swap benchmark: training the head on cached features vs running the frozen backbone.

With a frozen backbone, phase 1 of the head swap can run the backbone in every
epoch (the plain `model.fit` on images) or once (`mmtl_tf.models.fine_tune(...,
cache_features=True)`: extract features, then fit the `head` layer on them). Both
train the same head of the same model. This script times both on the bundled
emoji sample (1,334 training images, 287 validation images) for the same number
of epochs, in the same run, and prints the seconds and the speed-up. Machines
are noisy: compare the ratio, and rerun when in doubt.

    python bench/bench_head_swap_cache.py [--backbone efficientnet_lite0] [--image-size 96]
                                          [--epochs 5] [--batch 32]
    mmtl-tf bench head_swap_cache --epochs 5
"""

import argparse
import json
import os
import sys

from mmtl_tf.cli import positive_int  # noqa: E402 (range-checked options)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _data(size, batch):
    import mmtl_tf

    return {split: mmtl_tf.data.make_image_classification_dataset(
        "default", split, image_size=(size, size), batch_size=batch)
        for split in ("train", "validation")}


def _model(backbone, size):
    import keras

    import mmtl_tf

    keras.utils.set_random_seed(0)
    # Timing does not depend on the weights' values: random weights avoid any download.
    return mmtl_tf.models.build_head_swap_classifier(
        backbone, num_classes=9, input_shape=(size, size, 3), weights=None, head_units=(1024,))


def time_backbone_every_epoch(backbone, size, data, epochs):
    import mmtl_tf

    model = _model(backbone, size)
    result = mmtl_tf.models.fine_tune(model, data["train"], data["validation"], head_epochs=epochs,
                                      fine_tune_epochs=0, cache_features=False, verbose=0)
    return result["seconds"]["head"], result["head"]["val_accuracy"][-1]


def time_cached_features(backbone, size, data, epochs, batch):
    import mmtl_tf

    model = _model(backbone, size)
    result = mmtl_tf.models.fine_tune(model, data["train"], data["validation"], head_epochs=epochs,
                                      fine_tune_epochs=0, cache_features=True, batch_size=batch,
                                      verbose=0)
    return result["seconds"]["features"], result["seconds"]["head"], \
        result["head"]["val_accuracy"][-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=positive_int, default=96)
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import mmtl_tf

    mmtl_tf.runtime.configure(jit_compile="auto")
    data = _data(args.image_size, args.batch)
    for _ in data["train"]:  # fill the pixel caches before timing
        pass
    for _ in data["validation"]:
        pass
    plain, plain_acc = time_backbone_every_epoch(args.backbone, args.image_size, data, args.epochs)
    extract, head, cached_acc = time_cached_features(args.backbone, args.image_size, data,
                                                     args.epochs, args.batch)
    cached = extract + head
    rows = [
        ("backbone every epoch", plain, plain / args.epochs, plain_acc),
        ("cached features (extract once + head)", cached, head / args.epochs, cached_acc),
    ]
    print(f"\nmmtl_tf head-swap cache benchmark: {args.backbone}, {args.image_size} px, "
          f"{args.epochs} epochs of the head, batch {args.batch}, "
          f"jit_compile={mmtl_tf.runtime.get_jit_compile()}, {os.cpu_count()} CPU cores\n")
    header = ("phase 1 (head only, backbone frozen)", "total s", "s / epoch", "val accuracy*")
    widths = [40, 9, 10, 13]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for name, total, per_epoch, acc in rows:
        cells = [name, f"{total:.1f}", f"{per_epoch:.2f}", f"{acc:.3f}"]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    print(f"\nspeed-up of the cached phase: {plain / cached:.2f}x in total "
          f"(feature extraction {extract:.1f} s once), {plain / max(head, 1e-9):.1f}x per head "
          "epoch after it")
    print("* random backbone weights (timing only); the two runs train the same head on the "
          "same features but see the batches in another order")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backbone": args.backbone, "image_size": args.image_size,
                       "epochs": args.epochs, "backbone_every_epoch_s": plain,
                       "features_s": extract, "cached_head_s": head,
                       "speedup_total": plain / cached,
                       "speedup_per_epoch": plain / max(head, 1e-9)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
