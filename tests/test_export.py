import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.data.sources import load_image_text_records
from mmtl_tf.export import atomic_directory, export_image_text_classifier

FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
saved, rows, out = sys.argv[1:4]
rows = json.load(open(rows))
model = tf.saved_model.load(saved)
fn = model.signatures["serving_default"]
images = [open(r["path"], "rb").read() for r in rows]
result = fn(image_bytes=tf.constant(images), caption=tf.constant([r["caption"] for r in rows]))
empty = fn(image_bytes=tf.constant([], tf.string), caption=tf.constant([], tf.string))
result.update({"empty_" + k: v for k, v in empty.items()})
np.savez(out, **{k: v.numpy().astype(str) if v.dtype == tf.string else v.numpy() for k, v in result.items()})
"""


@pytest.fixture(scope="module")
def fusion_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    records = load_image_text_records("default", "test")
    train = load_image_text_records("default", "train")
    vec = mmtl_tf.data.make_text_vectorizer(train.captions, vocab_size=300, sequence_length=8)
    keras.utils.set_random_seed(0)
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(32, 32, 3), vocab_size=300, sequence_length=8, embedding_dim=8,
        lstm_units=8, conv_filters=8, hidden_units=8, num_classes=9)
    ds = mmtl_tf.data.make_image_text_dataset("default", "test", text_vectorizer=vec,
                                              image_size=(32, 32), batch_size=16, shuffle=False)
    x, _ = next(iter(ds))
    expected = model.predict(x, verbose=0)
    path = export_image_text_classifier(model, vec, str(tmp / "saved"), image_size=(32, 32),
                                        class_names=train.class_names)
    rows = [{"path": p, "caption": c} for p, c in zip(records.paths[:16], records.captions[:16])]
    return path, rows, expected, train.class_names, tmp


def test_saved_model_reproduces_keras_in_a_fresh_process(fusion_export):
    path, rows, expected, class_names, tmp = fusion_export
    (tmp / "rows.json").write_text(json.dumps(rows))
    out = tmp / "out.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, path, str(tmp / "rows.json"), str(out)],
                   check=True, env=env, timeout=300)
    got = np.load(out)
    assert got["probabilities"].dtype == np.float32
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["class_id"], expected.argmax(-1))
    assert list(got["class_name"]) == [class_names[i] for i in expected.argmax(-1)]
    # An empty request gets empty answers (the model's Conv2D failed on it).
    assert got["empty_probabilities"].shape == (0, len(class_names))
    assert got["empty_class_id"].shape == got["empty_class_name"].shape == (0,)


def test_saved_model_cli_lists_the_signature(fusion_export):
    path = fusion_export[0]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert "signature_def['serving_default']" in out
    assert "inputs['image_bytes']" in out and "inputs['caption']" in out
    assert "outputs['probabilities']" in out


def test_failed_export_leaves_the_previous_one_intact(tmp_path):
    target = tmp_path / "export"
    atomic_directory(str(target), lambda d: open(os.path.join(d, "ok.txt"), "w").write("v1"))

    def broken(d):
        open(os.path.join(d, "partial.txt"), "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_directory(str(target), broken)
    assert sorted(os.listdir(target)) == ["ok.txt"]
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary folder left
    atomic_directory(str(target), lambda d: open(os.path.join(d, "new.txt"), "w").write("v2"))
    assert sorted(os.listdir(target)) == ["new.txt"]


def test_a_failed_export_names_the_target_not_its_staging_folder(tmp_path, monkeypatch):
    # TensorFlow's errors (no OSError) named the temporary `.sm.tmp-…` folder
    # the export is written to before its rename, e.g. "…/.sm.tmp-1a2b3c4d/
    # variables/variables.data-00000-of-00001.tempstate…; No space left on device".
    import re
    import traceback

    import tensorflow as tf

    from mmtl_tf.export import export_image_classifier
    from tests.models.test_head_swap_classifier import tiny_backbone

    model = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(), 3, input_shape=(16, 16, 3), head_units=(), task="multiclass")
    target = str(tmp_path / "sm")
    # The backend's class (keras.export.ExportArchive() makes one of it); a
    # patched tf.saved_model.save is bound back during a process's first export.
    archive = type(keras.export.ExportArchive())
    real = archive.write_out

    def blocked(self, filepath, *args, **kwargs):
        # A real TensorFlow error: saved_model.pb cannot be written over a folder.
        os.makedirs(os.path.join(filepath, "saved_model.pb", "x"))
        return real(self, filepath, *args, **kwargs)

    def full_disk(self, filepath, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{filepath}/variables/variables.data-00000-of-00001.tempstate1; No "
                        f"space left on device")

    for writer, error in [(blocked, tf.errors.FailedPreconditionError),
                          (full_disk, tf.errors.ResourceExhaustedError)]:
        monkeypatch.setattr(archive, "write_out", writer)
        with pytest.raises(error) as info:
            export_image_classifier(model, target, (16, 16))
        assert ".tmp-" not in info.value.message
        assert info.value.message.startswith(target + os.sep)
        assert info.value.message.endswith(f": cannot write {target}")
        assert type(info.value.__cause__) is error and ".sm.tmp-" in info.value.__cause__.message
        # With the original's traceback: the CLI's "[raised in …]" names TensorFlow.
        origin = traceback.extract_tb(info.value.__traceback__)[-1].filename
        assert (f"{os.sep}tensorflow{os.sep}" in origin) == (writer is blocked), origin
        assert os.listdir(tmp_path) == []  # nothing half-written
    # An earlier export is left as it was, and the error says so.
    monkeypatch.setattr(archive, "write_out", real)
    export_image_classifier(model, target, (16, 16))
    before = sorted(os.listdir(target))
    monkeypatch.setattr(archive, "write_out", full_disk)
    with pytest.raises(tf.errors.ResourceExhaustedError,
                       match=rf"No space left on device: cannot write {re.escape(target)}; "
                             rf"{re.escape(target)} is unchanged$"):
        export_image_classifier(model, target, (16, 16))
    assert os.listdir(tmp_path) == ["sm"] and sorted(os.listdir(target)) == before


def test_files_added_to_the_export_folder_while_exporting_are_kept(tmp_path, monkeypatch):
    # check_export_path refuses a SavedModel folder with files of your own,
    # but files put there while the export ran were deleted by the swap.
    import re

    from mmtl_tf.errors import KeptFilesWarning
    from mmtl_tf.export import export_image_classifier
    from tests.models.test_head_swap_classifier import tiny_backbone

    model = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(), 3, input_shape=(16, 16, 3), head_units=(), task="multiclass")
    target = tmp_path / "sm"
    export_image_classifier(model, str(target), (16, 16))
    archive = type(keras.export.ExportArchive())
    real = archive.write_out

    def write_while_warm_up_is_added(self, filepath, *args, **kwargs):
        (target / "assets.extra").mkdir()
        (target / "assets.extra" / "tf_serving_warmup_requests").write_text("mine")
        return real(self, filepath, *args, **kwargs)

    monkeypatch.setattr(archive, "write_out", write_while_warm_up_is_added)
    with pytest.warns(RuntimeWarning) as caught:
        export_image_classifier(model, str(target), (16, 16))
    (kept,) = [p for p in tmp_path.iterdir() if p.name != "sm"]
    assert re.fullmatch(r"sm\.replaced-[0-9a-f]{8}", kept.name)
    assert [str(w.message) for w in caught] == [
        f"{target}: held assets.extra when this export finished, which no export writes; "
        f"the new SavedModel replaced it, and assets.extra is kept in {kept} (remove that "
        "when you no longer need it)."]
    assert caught[0].category is KeptFilesWarning
    assert os.listdir(kept) == ["assets.extra"]  # the old SavedModel itself is gone
    assert (kept / "assets.extra" / "tf_serving_warmup_requests").read_text() == "mine"
    assert not (target / "assets.extra").exists() and (target / "saved_model.pb").is_file()


def test_an_export_holds_only_what_check_export_path_accepts(fusion_export):
    # check_export_path replaces only a folder that holds nothing but what an
    # export writes (mmtl_tf.files.SAVED_MODEL_ENTRIES): a real one passes.
    from mmtl_tf.export import check_export_path
    from mmtl_tf.files import is_saved_model

    assert is_saved_model(fusion_export[0])
    check_export_path(fusion_export[0])


def test_export_folder_is_readable_like_any_new_folder(fusion_export):
    # A serving process often runs as another user: the SavedModel folder must
    # not keep the private mode of a temporary folder.
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fusion_export[0]).st_mode) == 0o777 & ~umask


def test_a_vectorizer_never_called_before_the_export(tmp_path):
    # make_text_vectorizer adapts the layer without calling it; Keras' export
    # refused to track it ("The layer provided has not yet been built").
    import tensorflow as tf
    from PIL import Image

    vec = mmtl_tf.data.make_text_vectorizer(["a red apple", "a blue sky"], vocab_size=20,
                                            sequence_length=6)
    assert not vec.built
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(16, 16, 3), vocab_size=20, sequence_length=6, embedding_dim=4,
        lstm_units=4, conv_filters=4, hidden_units=4, num_classes=2)
    path = export_image_text_classifier(model, vec, str(tmp_path / "sm"), image_size=(16, 16))
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype("uint8")
    Image.fromarray(pixels).save(tmp_path / "x.png")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    got = serve(image_bytes=tf.constant([(tmp_path / "x.png").read_bytes()]),
                caption=tf.constant(["a red sky"]))["probabilities"].numpy()
    tokens = np.asarray(vec(tf.constant(["a red sky"])), "int32")
    expected = model.predict({"image": pixels[None], "text": tokens}, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_captions_and_images_of_different_counts_are_refused(fusion_export):
    import tensorflow as tf

    path, rows, *_ = fusion_export
    serve = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="image_bytes and caption must hold the same number of items"):
        serve(image_bytes=tf.constant([open(rows[0]["path"], "rb").read()] * 2),
              caption=tf.constant(["one caption"]))


def test_items_that_are_not_image_files_are_named_by_position(fusion_export):
    # The decoder's own error ("Unknown image file format") named no item of
    # the batch; base64 text is what a client sends when it forgets to decode
    # it, or posts it to TensorFlow Serving's REST API without {"b64": ...}.
    import base64

    import tensorflow as tf

    path, rows, *_ = fusion_export
    serve = tf.saved_model.load(path).signatures["serving_default"]
    image = open(rows[0]["path"], "rb").read()

    def served(*items):
        return serve(image_bytes=tf.constant(list(items)),
                     caption=tf.constant(["a caption"] * len(items)))

    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes: base64 text, not image bytes, at these positions "
                             r"of the batch .*b64.*\] \[2\]"):
        served(image, image, base64.b64encode(image), b"")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes: not JPEG, PNG, GIF, BMP or WebP bytes at these "
                             r"positions of the batch \(by their first bytes\):\] \[1 3\]"):
        served(image, b"", image, b"<html><body>502 Bad Gateway</body></html>")
    assert served(image, image)["probabilities"].shape[0] == 2


def test_multilabel_export_names_the_present_classes(tmp_path):
    # The multi-label export returned only `present`: no class names anywhere.
    import tensorflow as tf

    from mmtl_tf.data.image import preprocess_image_bytes
    from mmtl_tf.export import export_image_classifier
    from tests.models.test_head_swap_classifier import tiny_backbone

    keras.utils.set_random_seed(1)
    model = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(), 5, input_shape=(16, 16, 3), head_units=(), task="multilabel")
    paths = load_image_text_records("default", "test").paths[:8]
    pixels = np.stack([preprocess_image_bytes(tf.io.read_file(p), (16, 16)).numpy()
                       for p in paths])
    probabilities = model.predict(pixels, verbose=0)
    threshold = float(np.median(probabilities))  # some classes present, some not
    names = ["cat", "dog", "person", "car", "tree"]
    export_image_classifier(model, str(tmp_path / "sm"), (16, 16), class_names=names,
                            threshold=threshold)
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    out = serve(image_bytes=tf.constant([open(p, "rb").read() for p in paths]))
    present = probabilities >= threshold
    np.testing.assert_array_equal(out["present"].numpy(), present)
    expected = ["|".join(n for n, p in zip(names, row) if p) for row in present]
    assert [s.decode() for s in out["class_name"].numpy()] == expected
    assert "" in expected or any("|" in e for e in expected)
    assert serve(image_bytes=tf.constant([], tf.string))["class_name"].shape == (0,)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes .*got shape \(\)"):
        serve(image_bytes=tf.constant(open(paths[0], "rb").read()))


def test_waveforms_with_nan_or_inf_are_refused_not_served_as_silence():
    # One NaN sample made the in-graph trimming keep nothing: the clip was
    # embedded as silence without an error.
    import tensorflow as tf

    _, preprocess = mmtl_tf.export.waveform_preprocessor(800)
    t = np.arange(1600, dtype="float32") / 16000
    wave = 0.5 * np.sin(2 * np.pi * 440 * t)
    assert float(tf.reduce_max(tf.abs(preprocess(tf.constant(wave[None]))))) > 0.4
    for bad in (np.nan, np.inf):
        broken = wave.copy()
        broken[100] = bad
        with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf samples"):
            preprocess(tf.constant(broken[None]))


def test_waveforms_training_refuses_are_refused_with_their_positions():
    # A clip of zeros, -120 dB noise and a 10-sample clip were embedded
    # without a word, where the data pipeline refuses them.
    import tensorflow as tf

    _, preprocess = mmtl_tf.export.waveform_preprocessor(800, min_samples=512)
    rng = np.random.default_rng(0)
    good = (0.3 * rng.standard_normal((1, 1600))).astype("float32")
    quiet = (1e-6 * rng.standard_normal((1, 1600))).astype("float32")
    short = np.zeros((1, 1600), "float32")
    short[0, :10] = 0.5
    assert preprocess(tf.constant(good)).shape == (1, 800)
    for rows, message in [
            ((good, np.zeros_like(good), quiet), r"(?s)waveform: all silent \(the loudest "
                                                r"frame below -70 dBFS.*of the batch:\W*1\W+2"),
            ((short, good), r"(?s)waveform: shorter than one FFT window \(512 samples.*"
                            r"of the batch:\W*0\W*$")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            preprocess(tf.constant(np.concatenate(rows)))
    # The same test of the clip's loudness as the data pipeline's (librosa's RMS).
    from mmtl_tf.data.audio import silent_or_short_rows, trim_silence_array

    for level in (1e-2, 2e-4, 5e-4, 1e-4):  # around -70 dBFS
        wave = (level * rng.standard_normal(3000)).astype("float32")
        silent, _ = silent_or_short_rows(wave[None])
        try:
            trim_silence_array(wave)
            refused = False
        except mmtl_tf.DataError:
            refused = True
        assert bool(silent[0]) == refused, level


BAD_WAVEFORMS = r"""
import json, sys
import numpy as np
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["encode_audio"]
good = 0.3 * np.random.default_rng(0).standard_normal((2, 1000)).astype("float32")
messages = {}
short = np.zeros((2, 1000), "float32")
short[1, :100] = 0.5
for name, x in [("one_clip", good[0]), ("stereo", np.stack([good, good], -1)),
                ("no_samples", np.zeros((2, 0), "float32")),
                ("short", np.concatenate([good[:1], short[1:]]))]:
    try:
        fn(waveform=tf.constant(x))
        messages[name] = "served"
    except tf.errors.InvalidArgumentError as e:
        messages[name] = e.message
messages["good"] = list(fn(waveform=tf.constant(good))["embeddings"].shape)
text = tf.saved_model.load(sys.argv[1]).signatures["encode_text"]
for name, x in [("scalar_text", "a b"), ("text_2d", [["a b"]])]:
    try:
        text(text=tf.constant(x))
        messages[name] = "served"
    except tf.errors.InvalidArgumentError as e:
        messages[name] = e.message
messages["no_clips"] = list(fn(waveform=tf.zeros([0, 0]))["embeddings"].shape)
lengths = tf.saved_model.load(sys.argv[1]).signatures["encode_audio_lengths"]
for name, n in [("lengths_count", [1000]), ("lengths_range", [1000, 1001]),
                ("lengths_negative", [-1, 1000]), ("lengths_short", [1000, 100]),
                ("lengths_2d", [[1000, 1000]])]:
    try:
        lengths(waveform=tf.constant(good), lengths=tf.constant(n, tf.int32))
        messages[name] = "served"
    except tf.errors.InvalidArgumentError as e:
        messages[name] = e.message
messages["lengths_good"] = lengths(waveform=tf.constant(good), lengths=tf.constant(
    [1000, 600], tf.int32))["embeddings"].numpy().tolist()
messages["good_values"] = fn(waveform=tf.constant(good))["embeddings"].numpy().tolist()
norms = tf.saved_model.load(sys.argv[1]).signatures["encode_text"](
    text=tf.constant(["", "a b", "zzzq"]))["embeddings"]
messages["text_norms"] = np.linalg.norm(norms.numpy(), axis=1).tolist()
json.dump(messages, open(sys.argv[2], "w"))
"""


def test_exported_audio_encoder_names_a_wrongly_shaped_waveform(tmp_path):
    # A single 1-D clip, a stereo batch and rows of no samples failed deep in
    # the graph ("slice index 1 of dimension 0 out of bounds", "first dimension
    # of paddings must be the rank", "indices[0,0] = 0 is not in [0, 0)").
    keras.utils.set_random_seed(0)
    model = mmtl_tf.models.build_audio_text_dual_encoder(
        num_samples=800, n_mels=16, conv_filters=(4,), vocab_size=20, sequence_length=4,
        embedding_dim=4, lstm_units=4, projection_dim=4)
    vectorizer = mmtl_tf.data.make_text_vectorizer(["a b", "c d"], vocab_size=20,
                                                   sequence_length=4)
    saved = str(tmp_path / "sm")
    mmtl_tf.export.export_audio_text_dual_encoder(model, vectorizer, saved)
    out = tmp_path / "out.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", BAD_WAVEFORMS, saved, str(out)], check=True,
                   env=env, timeout=300)
    got = json.loads(out.read_text())
    for name in ("one_clip", "stereo"):
        assert "waveform must be float32 (N, samples) mono audio" in got[name], got[name]
    assert "waveform has no samples" in got["no_samples"], got["no_samples"]
    # The tower's log-mel n_fft (512) is the shortest clip served.
    assert "waveform: shorter than one FFT window (512 samples" in got["short"], got["short"]
    assert got["good"] == [2, 4] and got["no_clips"] == [0, 4]
    # encode_audio_lengths: the lengths are checked against the batch.
    assert "waveform and lengths must hold the same number" in got["lengths_count"]
    for name in ("lengths_range", "lengths_negative"):
        assert "lengths: the number of samples of each row, from 0 to the waveform width" in \
            got[name], got[name]
    assert "[1]" in got["lengths_range"] and "[0]" in got["lengths_negative"]
    assert "shorter than one FFT window" in got["lengths_short"], got["lengths_short"]
    assert "lengths must be a batch of shape (N,)" in got["lengths_2d"], got["lengths_2d"]
    # A full length is the clip as sent; a shorter one cuts it.
    np.testing.assert_allclose(got["lengths_good"][0], got["good_values"][0], atol=1e-6)
    assert np.abs(np.subtract(got["lengths_good"][1], got["good_values"][1])).max() > 1e-4
    # Documented: a caption of no tokens is the zero vector, others unit length.
    np.testing.assert_allclose(got["text_norms"], [0.0, 1.0, 1.0], atol=1e-5)
    # Scalar and 2-D text: refused like the other exports' captions.
    for name, shape in (("scalar_text", "()"), ("text_2d", "(1, 1)")):
        assert "text must be a batch of shape (N,)" in got[name], got[name]
        assert f"got shape {shape}" in got[name], got[name]


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_class_names_of_the_wrong_length_or_type_are_refused_at_export(tmp_path, task):
    # 2 names for 3 classes exported fine and serving failed later (GatherV2);
    # 5 names or a bare str were accepted; multi-label failed with BroadcastTo.
    from mmtl_tf.export import export_image_classifier
    from tests.models.test_head_swap_classifier import tiny_backbone

    model = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(), 3, input_shape=(16, 16, 3), head_units=(), task=task)
    for names, message in [(["cat", "dog"], "class_names has 2 names but the model has 3"),
                           (list("abcde"), "class_names has 5 names but the model has 3"),
                           ("xyz", "class_names must be a list of str"),
                           ([0, 1, 2], "class_names must be a list of str")]:
        with pytest.raises(ValueError, match=message):
            export_image_classifier(model, str(tmp_path / "sm"), (16, 16), class_names=names)
        assert os.listdir(tmp_path) == []          # nothing written, no temporary folder
    export_image_classifier(model, str(tmp_path / "sm"), (16, 16), class_names=("a", "b", "c"))
    assert os.path.exists(tmp_path / "sm" / "saved_model.pb")


def test_image_text_export_checks_class_names_and_a_sigmoid_output_takes_two(tmp_path):
    vec = mmtl_tf.data.make_text_vectorizer(["a red apple"], vocab_size=20, sequence_length=4)
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(16, 16, 3), vocab_size=20, sequence_length=4, embedding_dim=4,
        lstm_units=4, conv_filters=4, hidden_units=4, num_classes=3)
    with pytest.raises(ValueError) as raised:
        export_image_text_classifier(model, vec, str(tmp_path / "sm"), (16, 16),
                                     class_names=["a", "b"])
    # The message itself, not autograph's "in user code:" and frames first.
    assert str(raised.value) == ("class_names has 2 names but the model has 3 classes; pass "
                                 "one name per class, in class-id order.")
    assert os.listdir(tmp_path) == []
    # A name given twice makes the served class_name ambiguous: a warning.
    with pytest.warns(UserWarning, match="class_names names 'a' more than once: the served "
                                         "class_name cannot tell those classes apart") as said:
        export_image_text_classifier(model, vec, str(tmp_path / "sm"), (16, 16),
                                     class_names=["a", "a", "b"])
    # Once (the serving functions' tracing said it twice more).
    assert len([w for w in said if "more than once" in str(w.message)]) == 1
    shutil.rmtree(tmp_path / "sm")
    from mmtl_tf.export import classifier_outputs

    import tensorflow as tf
    with pytest.raises(ValueError, match=r"has 1 names but the model has 2 classes \(one sigmoid"):
        classifier_outputs(tf.zeros((2, 1)), ["yes"])
    assert classifier_outputs(tf.constant([[0.2], [0.9]]), ["no", "yes"])[
        "class_name"].numpy().tolist() == [b"no", b"yes"]


def test_an_image_size_or_grayscale_the_model_does_not_take_is_refused_up_front(tmp_path):
    # Both failed in the serving function's tracing with Keras' "expected
    # shape=(None, 32, 32, 3), found shape=(None, 64, 64, 3)", naming no argument.
    from mmtl_tf.export import export_image_classifier, export_image_embedding
    from tests.models.test_head_swap_classifier import tiny_backbone

    vec = mmtl_tf.data.make_text_vectorizer(["a red apple"], vocab_size=20, sequence_length=4)
    fusion = mmtl_tf.models.build_fusion_classifier(
        image_shape=(16, 24, 3), vocab_size=20, sequence_length=4, embedding_dim=4,
        lstm_units=4, conv_filters=4, hidden_units=4, num_classes=3)
    with pytest.raises(ValueError, match=r"^image_size=\(16, 16\) but the model takes images "
                                         r"of 16 x 24 pixels .*pass image_size=\(16, 24\)\.$"):
        export_image_text_classifier(fusion, vec, str(tmp_path / "sm"), (16, 16))
    with pytest.raises(ValueError, match=r"^grayscale=True makes 1-channel images but the model "
                                         r"takes 3 channel\(s\) .*pass grayscale=False\.$"):
        export_image_text_classifier(fusion, vec, str(tmp_path / "sm"), (16, 24),
                                     grayscale=True)
    head_swap = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(), 3, input_shape=(16, 16, 3), head_units=())
    with pytest.raises(ValueError, match=r"image_size=\(32, 32\) but the model takes images "
                                         r"of 16 x 16"):
        export_image_classifier(head_swap, str(tmp_path / "sm"), (32, 32))
    # This export has no grayscale argument to suggest.
    pixels = keras.Input((16, 16, 1), dtype="uint8")
    gray = keras.Model(pixels, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(pixels)))
    with pytest.raises(ValueError, match=r"^this export serves 3-channel \(RGB\) images but "
                                         r"the model takes 1 channel\(s\) \(input shape "
                                         r"\(None, 16, 16, 1\)\)\.$"):
        export_image_classifier(gray, str(tmp_path / "sm"), (16, 16))
    tower = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 1), conv_filters=4)
    with pytest.raises(ValueError, match=r"grayscale=False makes 3-channel images but the "
                                         r"model takes 1 channel"):
        export_image_embedding(tower, str(tmp_path / "sm"), (16, 16))
    assert os.listdir(tmp_path) == []
    export_image_embedding(tower, str(tmp_path / "sm"), (16, 16), grayscale=True)
    assert os.path.exists(tmp_path / "sm" / "saved_model.pb")


def test_image_bytes_and_captions_of_another_shape_fail_naming_the_input(fusion_export):
    # A scalar image failed with "slice index 0 of dimension 0 out of bounds",
    # (1, 1) with "Specified a list with shape [] from a tensor with shape [1]",
    # a 2-D caption with StringSplitV2's "input must be a vector".
    import tensorflow as tf

    path, rows, *_ = fusion_export
    serve = tf.saved_model.load(path).signatures["serving_default"]
    png = open(rows[0]["path"], "rb").read()
    for image, caption, words in (
            (png, ["a"], r"image_bytes must be a batch of shape \(N,\).*got shape \(\)"),
            ([[png]], ["a"], r"image_bytes .*got shape \(1, 1\)"),
            ([png], "a", r"caption must be a batch of shape \(N,\).*got shape \(\)"),
            ([png], [["a"]], r"caption .*got shape \(1, 1\)")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            serve(image_bytes=tf.constant(image), caption=tf.constant(caption))


def test_served_jpegs_are_turned_by_their_exif_orientation(fusion_export):
    # A phone photo stored sideways (Exif orientation 6) is served as it is
    # shown: the same prediction as its pixels stored upright.
    import io

    import tensorflow as tf
    from PIL import Image

    from tests.data.test_image import _asymmetric, _exif_jpeg

    path, rows, _, _, _ = fusion_export
    data = _exif_jpeg(_asymmetric(24, 40), 6)
    stored = tf.io.decode_jpeg(data).numpy()

    def png(pixels):
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "PNG")
        return out.getvalue()

    serve = tf.saved_model.load(path).signatures["serving_default"]
    caption = tf.constant([rows[0]["caption"]] * 3)
    got = serve(image_bytes=tf.constant([data, png(np.rot90(stored, k=-1)), png(stored)]),
                caption=caption)["probabilities"].numpy()
    np.testing.assert_allclose(got[0], got[1], atol=1e-6, rtol=0)
    assert np.abs(got[0] - got[2]).max() > 1e-4  # as stored, it is another image


def test_a_vectorizer_with_more_tokens_than_the_model_takes_is_refused_at_export(tmp_path):
    # It exported, and only requests holding one of the extra words failed
    # ("indices[0,0] = 56 is not in [0, 20)").
    from mmtl_tf.export import export_image_text_dual_encoder

    words = [f"w{i}" for i in range(40)]
    big = mmtl_tf.data.make_text_vectorizer(words, vocab_size=30, sequence_length=4)
    fits = mmtl_tf.data.make_text_vectorizer(words, vocab_size=20, sequence_length=4)
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(16, 16, 3), vocab_size=20, sequence_length=4, embedding_dim=4,
        lstm_units=4, conv_filters=4, hidden_units=4, num_classes=3)
    with pytest.raises(ValueError, match=r"^the text vectorizer has 30 tokens \(ids 0..29\) but "
                                         r"the model's Embedding '.*' takes ids below 20 "
                                         r"\(vocab_size=20\)"):
        export_image_text_classifier(model, big, str(tmp_path / "sm"), (16, 16))
    assert os.listdir(tmp_path) == []
    export_image_text_classifier(model, fits, str(tmp_path / "sm"), (16, 16))
    assert os.path.exists(tmp_path / "sm" / "saved_model.pb")
    dual = mmtl_tf.models.build_dual_encoder(
        mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3), conv_filters=4),
        mmtl_tf.encoders.TextEncoder(vocab_size=20, sequence_length=4, embedding_dim=4,
                                     lstm_units=4),
        projection_dim=4)
    with pytest.raises(ValueError, match="the text vectorizer has 30 tokens"):
        export_image_text_dual_encoder(dual, big, str(tmp_path / "dual"), (16, 16))
    assert not os.path.exists(tmp_path / "dual")
    # The audio-text export wrote such a SavedModel (found by a helper).
    audio = mmtl_tf.models.build_audio_text_dual_encoder(
        num_samples=1600, n_mels=8, conv_filters=(4,), vocab_size=20, sequence_length=4,
        embedding_dim=4, lstm_units=4, projection_dim=4)
    with pytest.raises(ValueError, match="the text vectorizer has 30 tokens"):
        mmtl_tf.export.export_audio_text_dual_encoder(audio, big, str(tmp_path / "audio"))
    assert not os.path.exists(tmp_path / "audio")


def test_an_audio_export_reports_the_rate_its_model_was_built_for(tmp_path):
    # export_audio_text_dual_encoder's sample_rate defaulted to 16000 whatever
    # the model took: an 8 kHz model's audio_config() said 16000, so clients
    # sent it audio at twice its rate (found by a helper).
    model = mmtl_tf.models.build_audio_text_dual_encoder(
        num_samples=800, sample_rate=8000, n_mels=8, conv_filters=(4,), vocab_size=20,
        sequence_length=4, embedding_dim=4, lstm_units=4, projection_dim=4)
    vectorizer = mmtl_tf.data.make_text_vectorizer(["a b", "c d"], vocab_size=20,
                                                   sequence_length=4)
    with pytest.raises(ValueError, match=r"sample_rate=16000, but the audio tower's "
                                         r"LogMelSpectrogram takes 8000 Hz"):
        mmtl_tf.export.export_audio_text_dual_encoder(model, vectorizer, str(tmp_path / "a"),
                                                      sample_rate=16000)
    assert not os.path.exists(tmp_path / "a")
    with pytest.raises(ValueError, match="sample_rate must be a positive int"):
        mmtl_tf.export.export_audio_text_dual_encoder(model, vectorizer, str(tmp_path / "a"),
                                                      sample_rate=8000.5)
    saved = mmtl_tf.export.export_audio_text_dual_encoder(model, vectorizer,
                                                          str(tmp_path / "b"))
    import tensorflow as tf
    config = tf.saved_model.load(saved).signatures["audio_config"]()
    assert int(config["sample_rate"]) == 8000 and int(config["num_samples"]) == 800
    # A tower without a log-mel layer has no rate to read: it must be given.
    waves = keras.Input((800,))
    tower = keras.Model(waves, keras.layers.Dense(4)(waves))
    custom = mmtl_tf.models.build_audio_text_dual_encoder(
        audio_encoder=tower, vocab_size=20, sequence_length=4, embedding_dim=4,
        lstm_units=4, projection_dim=4)
    with pytest.raises(ValueError, match="has no LogMelSpectrogram .* pass sample_rate="):
        mmtl_tf.export.export_audio_text_dual_encoder(custom, vectorizer, str(tmp_path / "c"))
    saved = mmtl_tf.export.export_audio_text_dual_encoder(custom, vectorizer,
                                                          str(tmp_path / "c"), sample_rate=22050)
    assert int(tf.saved_model.load(saved).signatures["audio_config"]()["sample_rate"]) == 22050


def test_an_export_logs_no_staging_folder_at_tensorflows_info_level(tmp_path):
    # Where TensorFlow's logger is at INFO (a notebook's), saving logged
    # "Assets written to: .../.sm.tmp-1a2b3c4d/assets", twice per export.
    import logging

    from mmtl_tf.export import export_image_text_dual_encoder

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger, handler = logging.getLogger("tensorflow"), Keep()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        dual = mmtl_tf.models.build_dual_encoder(
            mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(8, 8, 3), conv_filters=4),
            mmtl_tf.encoders.TextEncoder(vocab_size=20, sequence_length=4, embedding_dim=4,
                                         lstm_units=4), projection_dim=4)
        vectorizer = mmtl_tf.data.make_text_vectorizer(["a b"], vocab_size=20,
                                                       sequence_length=4)
        export_image_text_dual_encoder(dual, vectorizer, str(tmp_path / "sm"), (8, 8))
        logger.info("after the export")  # the level is INFO again
        assert logger.level == logging.INFO
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert (tmp_path / "sm" / "saved_model.pb").exists()
    assert not [r for r in records if "tmp-" in r], records
    assert records[-1:] == ["after the export"]


def test_a_localization_export_serves_whole_images_by_default(tmp_path):
    # export_image_classifier's crop defaulted to True: a localization model
    # (trained on whole images) served the boxes of the centre crop, off by up
    # to 0.5 (found by a helper); `mmtl-tf export` passed crop=False itself.
    import io

    import tensorflow as tf
    from PIL import Image

    from mmtl_tf.data.image import preprocess_image_bytes
    from mmtl_tf.export import export_image_classifier
    from tests.models.test_head_swap_classifier import tiny_backbone

    keras.utils.set_random_seed(0)
    model = mmtl_tf.models.build_localization_model(
        tiny_backbone(), num_classes=2, input_shape=(16, 16, 3), weights=None, head_units=(8,),
        pooling="flatten")
    pixels = np.zeros((16, 48, 3), "uint8")
    pixels[:, :12] = 255  # a wide image whose left part the crop cuts off
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="crop=True for a localization model"):
        export_image_classifier(model, str(tmp_path / "cropped"), (16, 16), crop=True)
    assert not os.path.exists(tmp_path / "cropped")
    saved = export_image_classifier(model, str(tmp_path / "sm"), (16, 16))
    served = tf.saved_model.load(saved).signatures["serving_default"](
        image_bytes=tf.constant([buffer.getvalue()]))
    whole = preprocess_image_bytes(tf.constant(buffer.getvalue()), (16, 16), crop=False)
    cropped = preprocess_image_bytes(tf.constant(buffer.getvalue()), (16, 16), crop=True)
    keras_box = model.predict(whole[None], verbose=0)["box"]
    np.testing.assert_allclose(served["box"].numpy(), keras_box, atol=1e-5)
    assert np.abs(model.predict(cropped[None], verbose=0)["box"] - keras_box).max() > 1e-3


def test_one_class_multilabel_and_localization_models_export(tmp_path):
    # Both trained (a "where is the object" box model; an "is X present"
    # model) but their export failed: "class_names has 1 names but the model
    # has 2 classes (one sigmoid output: class 0 and class 1)", and a
    # one-class multi-label model was taken for a binary classifier.
    import io

    import tensorflow as tf
    from PIL import Image

    from mmtl_tf.data.image import preprocess_image_bytes
    from mmtl_tf.export import export_image_classifier
    from tests.models.test_head_swap_classifier import tiny_backbone

    buffers = []
    for value in (0, 255):
        buffer = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), value, "uint8")).save(buffer, format="PNG")
        buffers.append(buffer.getvalue())
    pixels = np.stack([preprocess_image_bytes(tf.constant(b), (16, 16)).numpy()
                       for b in buffers])
    keras.utils.set_random_seed(0)
    boxes = mmtl_tf.models.build_localization_model(
        tiny_backbone(), num_classes=1, input_shape=(16, 16, 3), weights=None, head_units=(8,),
        pooling="flatten")
    saved = export_image_classifier(boxes, str(tmp_path / "boxes"), (16, 16),
                                    class_names=["circle"])
    out = tf.saved_model.load(saved).signatures["serving_default"](
        image_bytes=tf.constant(buffers))
    assert sorted(out) == ["box", "class_id", "class_name"]
    assert out["class_name"].numpy().tolist() == [b"circle", b"circle"]
    assert out["class_id"].numpy().tolist() == [0, 0]
    np.testing.assert_allclose(out["box"].numpy(), boxes.predict(pixels, verbose=0)["box"],
                               atol=1e-5)
    present = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(), num_classes=1, input_shape=(16, 16, 3), weights=None, head_units=(8,),
        task="multilabel")
    with pytest.raises(ValueError, match="one sigmoid output: class 0 and class 1"):
        export_image_classifier(present, str(tmp_path / "present"), (16, 16),
                                class_names=["cat"])  # read as a binary classifier
    # A task the outputs contradict is refused (it served a localization
    # model's crop, or dropped `present`, without a word).
    for model, wrong in ((boxes, "multiclass"), (boxes, "multilabel"), (present, "localization")):
        with pytest.raises(ValueError, match=f"task='{wrong}', but .* by its outputs"):
            export_image_classifier(model, str(tmp_path / "wrong"), (16, 16), task=wrong)
    assert not os.path.exists(tmp_path / "wrong")
    saved = export_image_classifier(present, str(tmp_path / "present"), (16, 16),
                                    class_names=["cat"], task="multilabel")
    out = tf.saved_model.load(saved).signatures["serving_default"](
        image_bytes=tf.constant(buffers))
    probabilities = present.predict(pixels, verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), probabilities, atol=1e-5)
    assert out["present"].numpy()[:, 0].tolist() == (probabilities[:, 0] >= 0.5).tolist()
    assert out["class_name"].numpy().tolist() == [
        b"cat" if p >= 0.5 else b"" for p in probabilities[:, 0]]


def test_a_repeated_multilabel_class_name_is_warned_about_once(tmp_path):
    # The multi-label path's tracing repeated the warning (three in all).
    from mmtl_tf.export import export_image_classifier
    from tests.models.test_head_swap_classifier import tiny_backbone

    model = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(), 3, input_shape=(16, 16, 3), head_units=(), task="multilabel")
    with pytest.warns(UserWarning, match="more than once") as said:
        export_image_classifier(model, str(tmp_path / "sm"), (16, 16),
                                class_names=["a", "a", "b"])
    assert len([w for w in said if "more than once" in str(w.message)]) == 1
