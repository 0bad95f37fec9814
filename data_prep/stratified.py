"""The stratified train / validation / test split shared by the data_prep builders."""

import sys


def stratified_split(by_label, splits, key=None):
    """Splits every label's items by the fractions of `splits`.

    Args:
        by_label: dict label → list of items.
        splits: ((train_name, fraction), (validation_name, fraction),
            (test_name, rest)). Each label's first round(n × fraction) items go
            to train, the next round(n × fraction) to validation, the rest to test.
        key: callable or None. Orders each label's items first (e.g. a seeded
            hash, for a stable random-looking choice); None keeps their order.

    Returns:
        dict split name → list of items, labels in sorted order.
    """
    out = {name: [] for name, _ in splits}
    for label in sorted(by_label):
        items = sorted(by_label[label], key=key) if key else by_label[label]
        n = len(items)
        n_train, n_val = round(n * splits[0][1]), round(n * splits[1][1])
        parts = (items[:n_train], items[n_train:n_train + n_val], items[n_train + n_val:])
        for (name, _), part in zip(splits, parts):
            out[name] += part
    return out


if __name__ == "__main__":
    print("stratified.py is a helper module of the data_prep builders, not a script; "
          "run one of the build_*.py / fetch_*.py scripts beside it.", file=sys.stderr)
    sys.exit(2)
