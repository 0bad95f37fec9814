"""Helpers for tests of `mmtl-tf train` runs that must stop on bad data
before training starts."""

import json

from mmtl_tf import cli


def split_rows(records, sizes, labels=False):
    """Captions-file rows (dicts) of the first items of `records`, assigned to
    splits in order, e.g. `sizes={"train": 40, "validation": 8, "test": 8}`."""
    splits = [split for split, n in sizes.items() for _ in range(n)]
    rows = [{"path": p, "caption": c, "split": s}
            for p, c, s in zip(records.paths, records.captions, splits)]
    if labels:
        for row, label in zip(rows, records.labels):
            row["label"] = label
    return rows


def train_error(capsys, data_file, rows, task, *options):
    """Writes `rows` as JSON Lines to `data_file`, runs `mmtl-tf train TASK
    --size tiny --data data_file OPTIONS` and returns its stderr, checking
    that it failed on the data (status 1) before Keras showed any progress."""
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code = cli.main(["train", task, "--size", "tiny", "--data", str(data_file), *options])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "loss" not in out  # no progress bar: training never started
    return err
