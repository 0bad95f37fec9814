"""The `text-classifier` task end to end through the CLI."""

import json
import os

import numpy as np
import pytest

from mmtl_tf import cli
from mmtl_tf.files import foreign_entries, is_saved_model
from mmtl_tf.tasks import common, text_classifier


def test_train_evaluate_export_a_tiny_run(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert cli.main(["train", "text-classifier", "--size", "tiny", "--epochs", "2",
                     "--out", str(run)]) == 0
    for name in ("model.keras", "best.keras", "history.json", "metrics.json", "curves.png",
                 "run.json", "preprocessor.json"):
        assert (run / name).exists(), name
    assert foreign_entries(run, common.RUN_ENTRIES) == []  # the run may be replaced
    # The hash split's key is recorded (runs without it evaluate with the old one).
    assert json.loads((run / "run.json").read_text())["config"]["split_key"] == "text"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["cached_features"] and metrics["split_sizes"] == {
        "train": 884, "validation": 203, "test": 273}
    baselines = metrics["baselines"]
    for key in ("majority_class_accuracy", "logistic_regression_probe_accuracy",
                "lstm_from_scratch_accuracy"):
        assert 0.0 <= baselines[key] <= 1.0, key
    # The tiny recipe cuts texts at 32 tokens: some fortunes are truncated, and counted.
    assert metrics["truncated_texts"]["train"] > 0
    history = json.loads((run / "history.json").read_text())
    assert metrics["epochs_run"] == len(history["val_loss"]) and metrics["epochs"] == 2
    out = capsys.readouterr().out
    assert "LSTM from scratch" in out and "logistic-regression probe" in out
    # The saved full model (encoder + head trained on cached features) gives the
    # accuracy measured on the cached features.
    assert cli.main(["evaluate", str(run)]) == 0
    rows = metrics["test"]["rows"]
    assert f"test ({rows} rows): accuracy={metrics['test']['accuracy']:.4f}" in \
        capsys.readouterr().out
    # Other data with an empty text: named before the model runs on the rest
    # (it evaluated them all first).
    evaluated = []
    original = text_classifier._evaluate
    monkeypatch.setattr(text_classifier, "_evaluate",
                        lambda *a, **k: evaluated.append(1) or original(*a, **k))
    other = tmp_path / "other.jsonl"
    labels = json.loads((run / "run.json").read_text())["class_names"]
    other.write_text("".join(json.dumps({"text": t, "label": labels[i % len(labels)],
                                         "split": "test"}) + "\n"
                             for i, t in enumerate(["a fine day", "   ", "more words"])))
    assert cli.main(["evaluate", str(run), "--data", str(other)]) == 1
    assert "other.jsonl:2" in capsys.readouterr().err
    assert evaluated == []
    assert cli.main(["export", str(run), "--saved-model", str(tmp_path / "sm")]) == 0
    assert (tmp_path / "sm" / "saved_model.pb").exists()
    assert (tmp_path / "sm" / "tokens_only" / "saved_model.pb").exists()
    # All of it is what an export writes, so a later export may replace it.
    assert is_saved_model(tmp_path / "sm")


def test_bad_data_and_bad_encoder_folders_exit_with_a_clear_message(tmp_path, capsys):
    data = tmp_path / "texts.jsonl"
    data.write_text('{"text": "fine", "label": "a"}\n{"text": "", "label": "b"}\n')
    assert cli.main(["train", "text-classifier", "--size", "tiny", "--data", str(data),
                     "--out", str(tmp_path / "run")]) == 1
    assert "texts.jsonl:2: empty text" in capsys.readouterr().err
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    assert cli.main(["train", "text-classifier", "--size", "tiny", "--encoder", str(folder),
                     "--out", str(tmp_path / "run2")]) == 1
    err = capsys.readouterr().err
    assert "missing vocab.txt" in err and "model.safetensors" in err


def test_word_vocabulary():
    vocab = text_classifier.word_vocabulary(["The cat, the dog.", "the end"], 9)
    assert vocab == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "the", "cat"]


def test_word_vocabulary_holds_the_words_its_tokenizer_makes():
    # Accented words and CJK runs entered as `\w+` found them, which the
    # tokenizer never produces (all [UNK]); a run of over 256 bytes stopped
    # tensorflow-text ("Vocab token utf8 length ... exceeds the max").
    from mmtl_tf.data.bert_preprocessor import BertPreprocessor

    texts = ["Café résumé naïve", "中文文本", "ΣΑΣ x", "हिन्दी भाषा", "y" * 100, "z" * 101,
             "x" * 10000]
    vocab = text_classifier.word_vocabulary(texts, 100)
    assert "cafe" in vocab and "中" in vocab and "y" * 100 in vocab
    # The tokenizer makes words over 100 bytes [UNK]; over 256 it refused them.
    assert "z" * 101 not in vocab and "x" * 10000 not in vocab
    ids = BertPreprocessor(vocab, 16)(texts[:5])["token_ids"].numpy()
    unknown = vocab.index("[UNK]")
    assert not (ids == unknown).any(), [[vocab[i] for i in row] for row in ids]
    # Words with marks that are not \w (Devanagari vowel signs) are words,
    # limited by the size, not punctuation kept beyond it.
    small = text_classifier.word_vocabulary(["हिन्दी भाषा में", "the the cat"], 9)
    assert len(small) == 9 and "the" in small
    assert text_classifier.word_vocabulary([], 9) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                      "[MASK]"]


@pytest.mark.slow
def test_base_recipe_meets_the_issue_targets(tmp_path):
    """Frozen MiniLM + head within 2 points of the probe, clearly above the LSTM."""
    metrics = text_classifier.train(
        text_classifier.common.resolve_config("text_classifier", "base"),
        str(tmp_path / "run"), verbose=0)
    ours = metrics["test"]["accuracy"]
    probe = metrics["baselines"]["logistic_regression_probe_accuracy"]
    lstm = metrics["baselines"]["lstm_from_scratch_accuracy"]
    assert ours >= probe - 0.02, (ours, probe)
    assert ours > lstm + 0.2, (ours, lstm)
    assert np.isfinite(metrics["test"]["loss"])
    assert os.path.exists(tmp_path / "run" / "model.keras")


def test_runs_from_before_text_key_are_evaluated_on_their_own_split(tmp_path):
    # text_key re-drew the hash split of texts with capitals or doubled
    # spaces: evaluating an older run would have scored rows it trained on.
    from mmtl_tf.data.sources import hash_split

    texts = [f"Quote Number {i} of  the  Collection" for i in range(60)]
    (tmp_path / "texts.jsonl").write_text("".join(
        json.dumps({"text": t, "label": "ab"[i % 2]}) + "\n" for i, t in enumerate(texts)))
    config = {"data": str(tmp_path / "texts.jsonl"), "seed": 0}
    old = text_classifier._records(config)                       # no split_key: an old run
    new = text_classifier._records({**config, "split_key": "text"})
    assert set(old["test"].texts) == {t for t in texts if hash_split(t, 0) == "test"}
    assert set(new["test"].texts) != set(old["test"].texts)
