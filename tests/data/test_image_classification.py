import json
import os
import shutil
import warnings

import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf.data.image_classification import (largest_object, load_image_label_records,
                                               load_tfds_image_dataset,
                                               make_image_classification_dataset, multi_hot,
                                               tfds_image_pipeline)
from mmtl_tf.data.sources import load_image_text_records, unsplit_rows_in


def emoji_paths(n):
    return load_image_text_records("default", "train").paths[:n]


def test_default_sample_as_image_classification():
    ds, records = make_image_classification_dataset("default", "train", image_size=(32, 32),
                                                    batch_size=64, return_records=True)
    assert len(records) == 1334 and len(records.class_names) == 9
    images, labels = next(iter(ds))
    assert images.dtype == tf.uint8 and images.shape == (64, 32, 32, 3)
    assert labels.dtype == tf.int32 and int(tf.reduce_max(labels)) < 9
    text = load_image_text_records("default", "train")
    assert records.class_names == text.class_names == ds.class_names
    np.testing.assert_array_equal(records.label_ids(), text.label_ids())


@pytest.fixture
def labels_file(tmp_path):
    lines = ["path,label,box,split"]
    for i, path in enumerate(emoji_paths(12)):
        shutil.copy(path, tmp_path / f"img{i}.png")
        labels = ["cat", "dog|person", "person"][i % 3]
        split = "train" if i < 8 else "test"
        lines.append(f"img{i}.png,{labels},0.1 0.2 0.{5 + i % 4} 0.9,{split}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_labels_file_multilabel_and_localization_targets(labels_file):
    records = load_image_label_records(str(labels_file), "train", task="multilabel")
    assert records.class_names == ["cat", "dog", "person"]
    np.testing.assert_array_equal(records.targets("multilabel")[:3],
                                  [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    # A box with several labels is a bad row for localization: it gave its box
    # to the first label and made a class of the others, silently (a helper's
    # "circle|triangle" made a class "triangle" that no row trained).
    with pytest.raises(mmtl_tf.DataError, match=r"labels.csv:12: 2 labels \['dog', 'person'\] "
                                                r"\(localization needs one class per box\)"):
        make_image_classification_dataset(str(labels_file), "test", task="localization")
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 1 bad row"):
        ds = make_image_classification_dataset(str(labels_file), "test", task="localization",
                                               image_size=(24, 24), batch_size=4,
                                               on_error="skip")
    assert ds.class_names == ["cat", "person"]  # "dog" only came with "person"
    images, target = next(iter(ds))
    assert images.shape == (3, 24, 24, 3)
    np.testing.assert_allclose(target["box"][0], [0.1, 0.2, 0.5, 0.9], atol=1e-6)
    assert target["class"].dtype == tf.int32
    with pytest.raises(ValueError, match="needs crop=False"):
        make_image_classification_dataset(str(labels_file), "test", task="localization",
                                          crop=True)


def test_augment_changes_only_the_training_split(labels_file):
    kwargs = dict(task="multilabel", image_size=(24, 24), batch_size=8, shuffle=False, seed=1)
    plain, augmented = (next(iter(make_image_classification_dataset(
        str(labels_file), "train", augment=a, **kwargs)))[0].numpy() for a in (False, True))
    assert not np.array_equal(plain, augmented)
    plain = next(iter(make_image_classification_dataset(str(labels_file), "test", **kwargs)))
    with pytest.warns(UserWarning, match="augment=True is ignored for the 'test' split"):
        ds = make_image_classification_dataset(str(labels_file), "test", augment=True, **kwargs)
    np.testing.assert_array_equal(next(iter(ds))[0].numpy(), plain[0].numpy())


def test_bad_rows_name_the_row(labels_file):
    path = labels_file / "labels.csv"
    text = path.read_text().splitlines()
    text[3] = text[3].replace("0.1 0.2", "0.9 0.2")   # ymin > ymax
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(mmtl_tf.DataError, match=r"labels.csv:4: box .* not 0 <= ymin < ymax"):
        load_image_label_records(str(labels_file), "train", task="localization")
    with pytest.raises(mmtl_tf.DataError, match=r"labels.csv:3: 2 labels .*task='multilabel'"):
        load_image_label_records(str(labels_file), "train", task="multiclass")
    with pytest.warns(mmtl_tf.DataWarning, match="skipped"):
        records = load_image_label_records(str(labels_file), "train", task="multiclass",
                                           on_error="skip")
    assert len(records) == 5
    (labels_file / "other.csv").write_text("file,label\na.png,cat\n")
    with pytest.raises(mmtl_tf.DataError, match="missing column"):
        load_image_label_records(str(labels_file / "other.csv"), "train")


def test_class_folders_with_split_folders(tmp_path):
    paths = emoji_paths(8)
    for i, path in enumerate(paths):
        split = "train" if i < 6 else "validation"
        folder = tmp_path / split / ("apple" if i % 2 else "banana")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{i}.png")
    (tmp_path / "train" / "banana" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(mmtl_tf.DataError, match=r"broken.png.*cannot decode"):
        make_image_classification_dataset(str(tmp_path), "train", image_size=(16, 16))
    with pytest.warns(mmtl_tf.DataWarning):
        ds = make_image_classification_dataset(str(tmp_path), "train", image_size=(16, 16),
                                               on_error="skip", shuffle=False)
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert len(labels) == 6
    val = load_image_label_records(str(tmp_path), "validation")
    assert val.class_names == ["apple", "banana"] and len(val) == 2


def _voc_like_examples():
    """Local examples in the TFDS `voc/2007` format (image + objects with bbox/label)."""
    images = [tf.io.decode_png(tf.io.read_file(p), channels=3) for p in emoji_paths(3)]
    objects = [
        {"bbox": [[0.1, 0.1, 0.3, 0.3], [0.0, 0.2, 0.9, 0.8]], "label": [14, 11]},
        {"bbox": [[0.2, 0.2, 0.4, 0.9]], "label": [6]},
        {"bbox": [[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.6, 0.6], [0.0, 0.0, 0.2, 0.2]],
         "label": [3, 3, 7]},
    ]

    def gen():
        for image, obj in zip(images, objects):
            yield {"image": image.numpy(),
                   "objects": {"bbox": np.array(obj["bbox"], np.float32),
                               "label": np.array(obj["label"], np.int64)}}

    return tf.data.Dataset.from_generator(gen, output_signature={
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "objects": {"bbox": tf.TensorSpec((None, 4), tf.float32),
                    "label": tf.TensorSpec((None,), tf.int64)}})


def test_tfds_voc_pipeline_on_local_examples():
    examples = _voc_like_examples()
    multilabel = tfds_image_pipeline(examples, "voc/2007", "multilabel", 20, image_size=(32, 32),
                                     batch_size=3)
    images, targets = next(iter(multilabel))
    assert images.shape == (3, 32, 32, 3) and targets.shape == (3, 20)
    assert sorted(np.flatnonzero(targets[0])) == [11, 14]
    assert sorted(np.flatnonzero(targets[2])) == [3, 7]       # repeated class counts once
    local = tfds_image_pipeline(examples, "voc/2007", "localization", 20, image_size=(32, 32),
                                batch_size=3)
    _, targets = next(iter(local))
    np.testing.assert_array_equal(targets["class"], [11, 6, 3])   # the largest object
    np.testing.assert_allclose(targets["box"][0], [0.0, 0.2, 0.9, 0.8])
    single = tfds_image_pipeline(examples, "voc/2007", "multiclass", 20, image_size=(32, 32),
                                 batch_size=3)
    np.testing.assert_array_equal(next(iter(single))[1], [11, 6, 3])
    with pytest.raises(ValueError, match=r"task='localization'.*'multiclass'"):
        tfds_image_pipeline(examples, "tf_flowers", "localization", 5)


def test_tfds_pipeline_file_cache_is_keyed_by_its_settings(tmp_path):
    # One prefix for two sizes (or splits): the second read the first's
    # cache files ("Incompatible shapes").
    examples = _voc_like_examples()
    prefix = str(tmp_path / "c")
    for size in ((32, 32), (16, 16), (32, 32)):
        ds = tfds_image_pipeline(examples, "voc/2007", "multiclass", 20, image_size=size,
                                 batch_size=3, cache=prefix)
        assert [images.shape[1:3] for images, _ in ds] == [size]  # fills the cache
    for split in ("train[:80%]", "train[80%:]"):
        list(tfds_image_pipeline(examples, "voc/2007", "multiclass", 20, image_size=(32, 32),
                                 batch_size=3, cache=prefix, cache_key=split))
    assert len({n.split(".")[0] for n in os.listdir(tmp_path)}) == 4


def test_multi_hot_and_largest_object():
    np.testing.assert_array_equal(multi_hot(tf.constant([2, 0, 2]), 4), [1, 0, 1, 0])
    np.testing.assert_array_equal(multi_hot(tf.constant([], tf.int32), 3), [0, 0, 0])
    label, box = largest_object(tf.constant([[0, 0, 0.1, 0.1], [0, 0, 0.5, 0.5]]),
                                tf.constant([4, 9]))
    assert int(label) == 9 and box.shape == (4,)


def test_tfds_loader_without_data_says_how_to_get_it(tmp_path):
    with pytest.raises(mmtl_tf.DownloadError,
                       match=r"needs internet the first time.*tfds.load\('tf_flowers'\)"):
        load_tfds_image_dataset("tf_flowers", "train", data_dir=str(tmp_path), download=False)
    with pytest.raises(ValueError, match=r"name='voc'.*'voc/2007'"):
        load_tfds_image_dataset("voc", "train")


def _copy_images(root, layout):
    """Copies bundled emoji to `root/<relative path>` for each path in `layout`."""
    for source, relative in zip(emoji_paths(len(layout)), layout):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / relative)


def test_labels_file_names_match_in_any_case(tmp_path):
    _copy_images(tmp_path, [f"images/{i}.png" for i in range(8)])
    (tmp_path / "LABELS.CSV").write_text("path,label,split\n" + "".join(
        f"images/{i}.png,{'ab'[i % 2]},{'train' if i < 6 else 'test'}\n" for i in range(8)))
    records = load_image_label_records(str(tmp_path), "train")
    assert records.class_names == ["a", "b"] and len(records) == 6


def test_a_folder_read_as_a_single_class_is_an_error_naming_the_unread_files(tmp_path):
    # An images/ folder beside a labels file of another name looked like one
    # class folder: the run trained a one-class "classifier" without a word.
    _copy_images(tmp_path, [f"images/{i}.png" for i in range(6)])
    (tmp_path / "metadata.csv").write_text("path,label\nimages/0.png,a\n")
    with pytest.raises(mmtl_tf.DataError, match=r"only one holds images \('images'\).*"
                                                r"Not read: metadata.csv"):
        load_image_label_records(str(tmp_path), "train")
    (tmp_path / "metadata.csv").unlink()
    (tmp_path / "labels.csv").write_text(
        "path,label,split\n" + "".join(f"images/{i}.png,a,train\n" for i in range(6)))
    with pytest.raises(mmtl_tf.DataError, match=r"labels.csv.*the training split has one "
                                                r"class \('a'\)"):
        load_image_label_records(str(tmp_path / "labels.csv"), "train")


def test_a_held_out_folder_of_one_class_is_evaluated_with_the_models_classes(tmp_path):
    # `mmtl-tf evaluate RUN --data cats_only/` was refused ("a classifier needs
    # two or more classes") though the model's classes fix the ids; the same
    # images in a labels file were evaluated.
    _copy_images(tmp_path, [f"held_out/cats/{i}.png" for i in range(10)]
                 + [f"split/test/cats/{i}.png" for i in range(3)])
    classes = ["birds", "cats", "dogs"]
    records = load_image_label_records(str(tmp_path / "split"), "test", class_names=classes)
    assert len(records) == 3 and records.class_names == classes
    assert records.labels == [["cats"]] * 3
    ds = mmtl_tf.data.make_image_classification_dataset(
        str(tmp_path / "split"), "test", image_size=(8, 8), class_names=classes, batch_size=8)
    assert next(iter(ds))[1].numpy().tolist() == [1] * 3
    # A folder without split folders (its rows are split by the hash).
    records = load_image_label_records(str(tmp_path / "held_out"), "train", class_names=classes)
    assert len(records) >= 1 and records.labels == [["cats"]] * len(records)
    # Without the model's classes (training) it is still an error.
    with pytest.raises(mmtl_tf.DataError, match=r"only one holds images \('cats'\); a "
                                                r"classifier, or a Siamese, triplet or matching "
                                                r"network, needs two or more classes"):
        load_image_label_records(str(tmp_path / "held_out"), "train")


def test_class_folders_include_nested_images_and_warn_about_loose_ones(tmp_path):
    _copy_images(tmp_path, [f"Flags/europe/{i}.png" for i in range(4)]
                 + [f"Food/{i}.png" for i in range(4, 8)] + ["stray.png"])
    with pytest.warns(mmtl_tf.DataWarning, match=r"left out 1 image file.*stray.png"), \
            unsplit_rows_in("train"):  # every image in one split, to count them
        records = load_image_label_records(str(tmp_path), "train")
    assert records.class_names == ["Flags", "Food"]
    assert sorted(label for [label] in records.labels) == ["Flags"] * 4 + ["Food"] * 4


def test_class_folders_leave_out_hidden_files_and_macos_metadata(tmp_path):
    # A folder copied from a Mac to a USB stick or a network share gets a
    # "._NAME" (AppleDouble) file beside every image, and a zip made by Finder
    # holds them under __MACOSX/: they were read as images ("cannot decode"
    # for each, or a class "__MACOSX"). Hidden folders (.ipynb_checkpoints,
    # .git) and hidden files are not data either.
    _copy_images(tmp_path, [f"Flags/{i}.png" for i in range(4)]
                 + [f"Food/{i}.png" for i in range(4, 8)]
                 + [".ipynb_checkpoints/2.png", "Food/.cache/9.png", "Flags/.0.png"])
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(60)
    for relative in ["Flags/._0.png", "Food/._4.png", "__MACOSX/Flags/._0.png",
                     "__MACOSX/Food/._4.png", "._stray.png"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(apple_double)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "left out 1 image file" for ._stray.png
        with unsplit_rows_in("train"):
            records = load_image_label_records(str(tmp_path), "train")
            ds = make_image_classification_dataset(str(tmp_path), "train",
                                                   image_size=(16, 16), batch_size=8)
    assert records.class_names == ["Flags", "Food"]
    assert sorted(os.path.relpath(p, tmp_path) for p in records.paths) == sorted(
        [f"Flags/{i}.png" for i in range(4)] + [f"Food/{i}.png" for i in range(4, 8)])
    images, labels = next(iter(ds))
    assert images.shape == (8, 16, 16, 3) and sorted(labels.numpy()) == [0] * 4 + [1] * 4


def test_photos_in_formats_tensorflow_cannot_decode_are_named(tmp_path):
    # An iPhone's photos are HEIC: they were left out of class folders
    # without a word (or, all HEIC, "class folders hold no images").
    _copy_images(tmp_path, ["cat/0.png", "cat/1.png", "dog/2.png", "dog/3.png"])
    for name in ("cat/IMG_1.HEIC", "cat/IMG_2.heic", "dog/scan.tiff"):
        (tmp_path / name).write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.warns(mmtl_tf.DataWarning, match=(
            r"the class folders hold 3 file\(s\) in image formats that TensorFlow cannot "
            r"decode \(.heic 2, .tiff 1: .*IMG_1.HEIC, .*IMG_2.heic, .*scan.tiff\); convert "
            r"them to JPEG or PNG to use them; they are left out")), unsplit_rows_in("train"):
        records = load_image_label_records(str(tmp_path), "train")
    assert sorted(os.path.basename(p) for p in records.paths) == [f"{i}.png" for i in range(4)]
    only = tmp_path / "only_heic"
    for name in ("cat/a.heic", "dog/b.heic"):
        (only / name).parent.mkdir(parents=True, exist_ok=True)
        (only / name).write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(mmtl_tf.DataError, match=r"class folders hold no images .*; the class "
                                                r"folders hold 2 file\(s\) in image formats that TensorFlow "
                                                r"cannot decode \(.heic 2"):
        load_image_label_records(str(only), "train")
    # Named in a labels file: the error says what the format is.
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "".join(
        f"{p},{'ab'[i % 2]},train\n" for i, p in enumerate(
            ["cat/0.png", "cat/1.png", "dog/2.png", "dog/3.png", "cat/IMG_1.HEIC"])))
    with pytest.raises(mmtl_tf.DataError, match=r"IMG_1.HEIC\): cannot decode image: "
                                                r"TensorFlow does not decode HEIC images"):
        make_image_classification_dataset(str(tmp_path / "labels.csv"), "train",
                                          image_size=(16, 16))


def test_class_folder_names_and_labels_are_compared_in_one_unicode_form(tmp_path):
    # macOS writes "café" as NFD; a labels file or a run's class names as typed
    # (NFC): the same class must not become two, nor an unknown label.
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    _copy_images(tmp_path, [f"{nfd}/{i}.png" for i in range(3)]
                 + [f"tea/{i}.png" for i in range(3, 6)])
    with unsplit_rows_in("train"):
        records = load_image_label_records(str(tmp_path), "train")
        again = load_image_label_records(str(tmp_path), "train", class_names=[nfc, "tea"])
    assert records.class_names == [nfc, "tea"] and again.class_names == [nfc, "tea"]
    assert sorted(label for [label] in records.labels) == [nfc] * 3 + ["tea"] * 3
    assert all(os.path.isfile(p) for p in records.paths)


def test_split_folders_in_any_case_and_misnamed_ones(tmp_path):
    _copy_images(tmp_path, [f"Train/{'ab'[i % 2]}/{i}.png" for i in range(6)]
                 + [f"TEST/{'ab'[i % 2]}/{i}.png" for i in range(6, 8)])
    assert len(load_image_label_records(str(tmp_path), "test")) == 2
    # A "val" folder beside train/: not silently an empty validation split.
    _copy_images(tmp_path, [f"val/{'ab'[i % 2]}/{i}.png" for i in range(2)])
    with pytest.raises(mmtl_tf.DataError, match=r"split folders \(TEST, Train\) and other "
                                                r"folders with images \(val\)"):
        load_image_label_records(str(tmp_path), "train")


def test_images_without_class_folders_say_where_they_lie(tmp_path):
    _copy_images(tmp_path, [f"{i}.png" for i in range(3)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(mmtl_tf.DataError, match=r"class folders hold no images.*3 lie "
                                                r"directly in the folder"):
        load_image_label_records(str(tmp_path), "train")


def test_same_file_names_in_every_class_folder_are_split_per_class(tmp_path):
    # The hash split keyed on the file name alone: 001.png fell in the same
    # split in every class folder, so 12 classes of 10 images named alike got
    # the same test images in every class (or none at all).
    from PIL import Image

    for c in range(12):
        os.makedirs(tmp_path / f"class{c}")
        for i in range(10):
            Image.new("RGB", (4, 4)).save(tmp_path / f"class{c}" / f"{i:03d}.png")
    names_by_class = {}
    for split in ("train", "validation", "test"):
        try:
            records = load_image_label_records(str(tmp_path), split)
        except mmtl_tf.DataError:
            continue
        for path in records.paths:
            names_by_class.setdefault(os.path.basename(os.path.dirname(path)), {})[
                os.path.basename(path)] = split
    assignments = {tuple(sorted(d.items())) for d in names_by_class.values()}
    assert len(names_by_class) == 12 and len(assignments) > 6
    # Moving the folder keeps every image's split.
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    shutil.copytree(tmp_path, moved)
    test = load_image_label_records(str(tmp_path), "test").paths
    assert [os.path.relpath(p, tmp_path) for p in test] == [
        os.path.relpath(p, moved) for p in load_image_label_records(str(moved), "test").paths]


def test_labels_file_rows_sharing_an_image(tmp_path):
    # Rows that repeat a file and its label (a captions file names an image
    # once per caption) are one row: each image counts once in training and
    # in the test accuracy. A bad shared file is reported with all its rows.
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((6, 6, 3), 50 * i, "uint8")).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_text("no")
    rows = [("0.png", "a"), ("1.png", "b"), ("./0.png", "a"), ("broken.png", "b"),
            ("2.png", "b"), ("broken.png", "b")]
    (tmp_path / "labels.csv").write_text(
        "path,label,split\n" + "".join(f"{p},{label},train\n" for p, label in rows))
    with pytest.warns(mmtl_tf.DataWarning, match=r"(?s)1 bad image file.*labels.csv:5, "
                                                 r".*labels.csv:7 \(.*broken.png\)"):
        ds, records = make_image_classification_dataset(
            str(tmp_path), "train", image_size=(4, 4), batch_size=8, shuffle=False,
            on_error="skip", return_records=True)
    assert [os.path.basename(p) for p in records.paths] == ["0.png", "1.png", "2.png"]
    assert records.rows[0] == f"{tmp_path / 'labels.csv'}:2, {tmp_path / 'labels.csv'}:4"
    images, labels = next(iter(ds))
    assert images.numpy()[:, 0, 0, 0].tolist() == [0, 50, 100]
    assert labels.numpy().tolist() == [0, 1, 1] and ds.class_names == ["a", "b"]


def test_captions_file_rows_count_each_image_once_per_split(tmp_path):
    # head-swap read a captions file with 3 captions per image as 3 rows per
    # image: 18 test rows for 6 files, the accuracy weighted by caption count.
    _copy_images(tmp_path, [f"{i}.png" for i in range(40)])
    (tmp_path / "captions.csv").write_text("path,caption,label\n" + "".join(
        f"{i}.png,caption {k} of {i},{'ab'[i % 2]}\n" for i in range(40) for k in range(3)))
    counts = {}
    for split in ("train", "validation", "test"):
        records = load_image_label_records(str(tmp_path), split)
        assert len(records.paths) == len(set(records.paths))
        counts[split] = len(records)
        assert all(row.count("captions.csv:") == 3 for row in records.rows)
    assert sum(counts.values()) == 40 and counts["test"] > 0


def test_one_image_with_two_classes_is_a_bad_row_in_multiclass(tmp_path):
    _copy_images(tmp_path, [f"{i}.png" for i in range(4)])
    (tmp_path / "labels.csv").write_text(
        "path,label,split\n0.png,red,train\n1.png,green,train\n0.png,green,train\n"
        "2.png,red,train\n3.png,green,test\n")
    with pytest.raises(mmtl_tf.DataError, match=r"(?s)2 bad rows:.*labels.csv:2: image "
                                                r".*0.png is 'red' here but 'green' at "
                                                r".*labels.csv:4 .*labels.csv:4: .*'green' "
                                                r"here but 'red' at .*labels.csv:2"):
        load_image_label_records(str(tmp_path), "train")
    with pytest.warns(mmtl_tf.DataWarning, match=r"skipped 2 bad rows.*"):
        records = load_image_label_records(str(tmp_path), "train", on_error="skip")
    assert [os.path.basename(p) for p in records.paths] == ["1.png", "2.png"]
    # Multi-label: the rows' classes are merged into one row for the image.
    records = load_image_label_records(str(tmp_path), "train", task="multilabel")
    assert [os.path.basename(p) for p in records.paths] == ["0.png", "1.png", "2.png"]
    np.testing.assert_array_equal(records.targets("multilabel"),
                                  [[1, 1], [1, 0], [0, 1]])  # classes green, red


def test_one_image_with_two_boxes_is_a_bad_row_in_localization(tmp_path):
    _copy_images(tmp_path, [f"{i}.png" for i in range(3)])
    (tmp_path / "labels.csv").write_text(
        "path,label,box,split\n0.png,a,0 0 1 1,train\n1.png,b,0 0 1 1,train\n"
        "0.png,a,0 0 .5 .5,train\n2.png,b,0 0 1 1,train\n")
    with pytest.raises(mmtl_tf.DataError, match=r"labels.csv:2: image .*0.png is box 0 0 1 1 "
                                                r"here but box 0 0 0.5 0.5 at .*labels.csv:4"):
        load_image_label_records(str(tmp_path), "train", task="localization")


def test_linked_directory_loops_are_walked_once(tmp_path):
    # `cf/Flags/again -> .` (like a `latest -> .` link in an image dump): the
    # walk followed again/again/... and listed 30 files as 334 rows, most test
    # rows training images under another path.
    layout = [f"cf/{'Flags' if i % 3 else 'Food'}/{i}.png" for i in range(12)]
    layout += [f"split/{s}/{c}/{i}.png" for i, (s, c) in enumerate(
        [("train", "Flags"), ("train", "Food")] * 3 + [("test", "Flags"), ("test", "Food")])]
    _copy_images(tmp_path, layout)
    os.symlink(".", tmp_path / "cf" / "Flags" / "again")
    os.symlink(".", tmp_path / "split" / "train" / "Flags" / "again")
    os.symlink("../Food", tmp_path / "split" / "test" / "Food" / "up")  # through test/
    for root, real in (("cf", 12), ("split", 8)):
        paths = []
        for split in ("train", "validation", "test"):
            try:
                paths += load_image_label_records(str(tmp_path / root), split).paths
            except mmtl_tf.DataError as error:
                assert "has no rows" in str(error)
        assert len(paths) == real
        assert len({os.path.realpath(p) for p in paths}) == real
        assert not any("again" in p or "up" in p.split(os.sep) for p in paths)


def test_a_file_reached_through_two_links_is_one_row_in_one_split(tmp_path):
    # Plain links keep working; one file reached by two paths is one row,
    # hashed by its first path, so it cannot be in two splits.
    _copy_images(tmp_path, [f"data/{'ab'[i % 2]}/{i}.png" for i in range(20)])
    os.symlink(tmp_path / "data" / "a", tmp_path / "data" / "b" / "a_too")  # b/a_too/*: a's
    os.symlink("0.png", tmp_path / "data" / "a" / "latest.png")
    with unsplit_rows_in("train"):
        records = load_image_label_records(str(tmp_path / "data"), "train",
                                           task="multilabel")
    assert len(records) == 20
    # In multiclass, a's images are also in class b: each row named with the other.
    with pytest.raises(mmtl_tf.DataError, match=r"a_too/0.png: image is 'b' here but 'a' at "
                                                r".*data/a/0.png"):
        with unsplit_rows_in("train"):
            load_image_label_records(str(tmp_path / "data"), "train")
    (tmp_path / "data" / "b" / "a_too").unlink()
    splits = {}
    for split in ("train", "validation", "test"):
        try:
            records = load_image_label_records(str(tmp_path / "data"), split)
        except mmtl_tf.DataError:
            continue
        for path in records.paths:
            splits.setdefault(os.path.realpath(path), []).append(split)
    assert len(splits) == 20 and all(len(s) == 1 for s in splits.values())


def test_a_class_folder_whose_every_image_is_skipped_is_warned_about(tmp_path):
    from PIL import Image

    train = tmp_path / "train"
    for name in ("cat", "dog", "owl"):
        (train / name).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((6, 6, 3), 50 * i, "uint8")).save(train / "cat" / f"{i}.png")
        (train / "dog" / f"{i}.png").write_text("not an image")
    Image.fromarray(np.full((6, 6, 3), 90, "uint8")).save(train / "owl" / "0.png")
    (train / "owl" / "1.png").write_text("not an image")
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        ds = make_image_classification_dataset(str(tmp_path), "train", image_size=(4, 4),
                                               on_error="skip")
    assert ds.class_names == ["cat", "dog", "owl"]
    assert [str(w.message).split(" is left")[0] for w in warned] == [
        str(warned[0].message).split(" is left")[0], "no training row of class(es) 'dog'"]
    assert str(warned[0].message).startswith("skipped 3 bad image files")


def test_class_folder_names_are_stripped_as_labels_are(tmp_path):
    # `red ` and `red` were two classes that look alike in the export's
    # class_name output; a labels file's " red" was already "red".
    _copy_images(tmp_path, [f"red /{i}.png" for i in range(3)]
                 + [f"red/{i}.png" for i in range(3, 6)] + [f"tea/{i}.png" for i in range(6, 9)])
    with unsplit_rows_in("train"):
        records = load_image_label_records(str(tmp_path), "train")
        again = load_image_label_records(str(tmp_path), "train", class_names=["red ", " tea"])
    assert records.class_names == ["red", "tea"] and again.class_names == ["red", "tea"]
    assert sorted(label for [label] in records.labels) == ["red"] * 6 + ["tea"] * 3
    (tmp_path / "  ").mkdir()
    shutil.copy(records.paths[0], tmp_path / "  " / "x.png")
    with pytest.raises(mmtl_tf.DataError, match="only spaces"):
        load_image_label_records(str(tmp_path), "train")


def test_class_names_given_as_one_string_are_refused(tmp_path):
    _copy_images(tmp_path, [f"red/{i}.png" for i in range(3)] + [f"tea/{i}.png" for i in range(3, 6)])
    with unsplit_rows_in("test"):   # any sequence of str, e.g. np.unique's
        assert load_image_label_records(str(tmp_path), "test", class_names=np.array(
            ["red", "tea"])).class_names == ["red", "tea"]
    for bad, message in (("red", "a list of class names"), (["red", 3], "3 is a int"),
                         (5, "a list of class names"),
                         (["red", "red ", "tea"], r"names 'red' more than once once stripped")):
        with pytest.raises(ValueError, match=message):
            load_image_label_records(str(tmp_path), "test", class_names=bad)
        with pytest.raises(ValueError, match=message):
            load_image_text_records("default", "test", class_names=bad)


def test_images_that_a_labels_file_leaves_out_of_its_class_folders_are_warned_about(tmp_path):
    # A labels.csv left in a folder of class folders was read, and the class
    # folders it did not list disappeared without a word.
    _copy_images(tmp_path, [f"{c}/{i}.png" for c in ("red", "green", "blue") for i in range(4)])
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"{c}/{i}.png,{c}\n" for c in ("red", "green") for i in range(4)))
    with unsplit_rows_in("train"), pytest.warns(mmtl_tf.DataWarning) as caught:
        records = load_image_label_records(str(tmp_path), "train")
    assert records.class_names == ["green", "red"]
    message = " ".join(str(w.message) for w in caught)
    assert "4 image file(s) below it are not listed in labels.csv" in message
    assert "in folder(s) blue)" in message and "blue/0.png" in message
    # Every image listed: no warning.
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"{c}/{i}.png,{c}\n" for c in ("red", "green", "blue") for i in range(4)))
    with unsplit_rows_in("train"), warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image_label_records(str(tmp_path), "train")


def test_a_localization_row_without_a_box_says_so(tmp_path):
    _copy_images(tmp_path, [f"{i}.png" for i in range(4)])
    rows = [{"path": f"{i}.png", "label": "ab"[i % 2], "box": [0.1, 0.1, 0.9, 0.9]}
            for i in range(4)]
    del rows[1]["box"]          # it said "expected 4 numbers"
    rows[2]["box"] = 7
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(mmtl_tf.DataError) as e:
        load_image_label_records(str(tmp_path), "train", task="localization")
    assert "labels.jsonl:2: no box (localization needs one per row" in str(e.value)
    assert "labels.jsonl:3: box 7 is not 4 numbers" in str(e.value)


def test_labels_with_an_empty_name_between_separators_and_boolean_boxes_are_bad_rows(tmp_path):
    # "circle||square" and "circle|" were read as two and one labels, and a
    # JSON box [false, false, true, true] as (0, 0, 1, 1), without a word
    # (found by a helper).
    import json

    paths = emoji_paths(4)
    rows = []
    for i, path in enumerate(paths):
        shutil.copy(path, tmp_path / f"img{i}.png")
        rows.append({"path": f"img{i}.png", "label": ["cat", "dog|cat"][i % 2],
                     "box": [0.1, 0.1, 0.5, 0.5], "split": "train"})
    rows[0]["label"], rows[1]["label"] = "circle||square", "circle|"
    rows[2]["box"] = [False, False, True, True]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(mmtl_tf.DataError) as err:
        load_image_label_records(str(tmp_path), "train", task="multilabel")
    message = str(err.value)
    assert "labels.jsonl:1: label 'circle||square' has an empty class name" in message
    assert "labels.jsonl:2: label 'circle|' has an empty class name" in message
    with pytest.raises(mmtl_tf.DataError, match=r"labels.jsonl:3: box \[False, False, True, "
                                                r"True\] holds true/false"):
        load_image_label_records(str(tmp_path), "train", task="localization", on_error="raise")


def test_a_class_whose_training_rows_are_all_skipped_is_named(tmp_path):
    # Every training box of 'c' was upside down: under on_error="skip" the
    # class left the localization model without a word.
    from PIL import Image

    rows = []
    for label in "abc":
        for i in range(5):
            Image.fromarray(np.full((6, 6, 3), 40 * i, "uint8")).save(tmp_path / f"{label}{i}.png")
            split = "train" if i < 3 else "test"
            box = "0.6 0.6 0.2 0.2" if label == "c" and split == "train" else "0.1 0.1 0.5 0.5"
            rows.append((f"{label}{i}.png", label, box, split))

    def write(path, rows, folder=""):
        path.write_text("path,label,box,split\n" + "".join(
            f"{folder}{image},{label},{box},{split}\n" for image, label, box, split in rows))

    def lost_class_warnings(source):
        with pytest.warns(mmtl_tf.DataWarning) as warned:
            records = load_image_label_records(source, "train", task="localization",
                                               on_error="skip")
        assert records.class_names == ["a", "b"]
        return [str(w.message) for w in warned if "no training row of theirs" in str(w.message)]

    write(tmp_path / "labels.csv", rows)
    assert lost_class_warnings(str(tmp_path / "labels.csv")) == [
        f"{tmp_path / 'labels.csv'}: class(es) 'c' had rows skipped as bad and no training row "
        "of theirs is left, so they are not classes of the model (their validation and test "
        "rows are skipped too)"]
    # Per-split files: the training file's bad rows count.
    (tmp_path / "split").mkdir()
    for split in ("train", "test"):
        write(tmp_path / "split" / f"{split}.csv", [r for r in rows if r[3] == split], "../")
    assert len(lost_class_warnings(str(tmp_path / "split"))) == 1


def test_labels_written_as_lists_or_joined_by_commas_are_named(tmp_path):
    # pandas writes a list column as "['blue', 'red']"; a JSON array in a CSV
    # cell and "red,green" did the same: every combination trained as one
    # class of its own, without a word (a user helper's run: 14 classes).
    from PIL import Image

    for i in range(12):
        Image.fromarray(np.full((6, 6, 3), 20 * i, "uint8")).save(tmp_path / f"{i}.png")
    cases = {"pandas": "\"['blue', 'red']\"", "json": "\"[\"\"red\"\", \"\"green\"\"]\""}
    for name, cell in cases.items():
        lines = ["path,label,split"] + [f"{i}.png,{'red' if i % 2 else 'blue'},train"
                                        for i in range(1, 12)] + [f"0.png,{cell},train"]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
        with pytest.raises(mmtl_tf.DataError) as e:
            load_image_label_records(str(tmp_path / f"{name}.csv"), "train", task="multilabel")
        assert f"{name}.csv:13: label " in str(e.value)
        assert "looks like a list written as text (pandas writes a list column so); several " \
               "labels of one image are written 'a|b'" in str(e.value)
        with pytest.raises(mmtl_tf.DataError, match="looks like a list written as text"):
            load_image_label_records(str(tmp_path / f"{name}.csv"), "train")
    # "red,green" beside "red" and "green" rows: a warning naming the row.
    lines = ["path,label,split"] + [f"{i}.png,{'red' if i % 2 else 'green'},train"
                                    for i in range(1, 12)] + ['0.png,"red,green",train']
    (tmp_path / "commas.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(mmtl_tf.DataWarning, match=r"class\(es\) 'red,green' \(.*commas.csv:13\) "
                                                 r"are other classes joined by commas"):
        records = load_image_label_records(str(tmp_path / "commas.csv"), "train",
                                           task="multilabel")
    assert records.class_names == ["green", "red", "red,green"]
    # A comma inside a name whose parts are not classes is a name.
    (tmp_path / "named.csv").write_text("\n".join(
        ["path,label,split"] + [f"{i}.png,\"{'Smileys, people' if i % 2 else 'Flags'}\",train"
                                for i in range(12)]) + "\n")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", mmtl_tf.DataWarning)
        records = load_image_label_records(str(tmp_path / "named.csv"), "train")
    assert records.class_names == ["Flags", "Smileys, people"]


def test_an_empty_name_in_a_json_label_list_is_a_bad_row_as_in_a_bar_list(tmp_path):
    from PIL import Image

    rows = []
    for i in range(6):
        Image.fromarray(np.full((6, 6, 3), 30 * i, "uint8")).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["red", "blue"][i % 2], "split": "train"})
    rows[3]["label"] = ["red", ""]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(mmtl_tf.DataError, match=r"labels.jsonl:4: label list \['red', ''\] "
                                                r"holds an empty class name"):
        load_image_label_records(str(tmp_path / "labels.jsonl"), "train", task="multilabel")


def test_boxes_with_decimal_commas_are_read(tmp_path):
    # A semicolon CSV from a decimal-comma locale: "0,25 0,125 0,75 0,5" read
    # as 8 numbers on every row.
    from mmtl_tf.data.image_classification import _parse_box

    assert _parse_box("0,25 0,125 0,75 0,5") == (0.25, 0.125, 0.75, 0.5)
    assert _parse_box("0.25,0.125,0.75,0.5") == (0.25, 0.125, 0.75, 0.5)
    assert _parse_box(",25 ,125 ,75 ,5") == (0.25, 0.125, 0.75, 0.5)
    with pytest.raises(ValueError, match="has 6 numbers, not 4 .*numbers with decimal commas "
                                         "are read as such when there are 4 of them"):
        _parse_box("0,25 0,125 0,75")


def test_names_in_brackets_are_names_and_test_only_classes_are_not_lost(tmp_path):
    # "[other]" and "[PAD]" are class names, not lists; a bad test row of a
    # class that never had a training row was said to have lost its training
    # rows.
    from PIL import Image

    lines = ["path,label,split"]
    for i in range(9):
        Image.fromarray(np.full((6, 6, 3), 25 * i, "uint8")).save(tmp_path / f"{i}.png")
        name = ["[other]", "[PAD]", "[don't know]"][i % 3]
        lines.append(f'{i}.png,"{name}",train')
    lines.append("9.png,owl,test")  # missing file: no matter, the row is bad first
    lines.append(",owl,test")       # no path: a bad test row of a test-only class
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        records = load_image_label_records(str(tmp_path / "labels.csv"), "train",
                                           on_error="skip")
    assert records.class_names == ["[PAD]", "[don't know]", "[other]"]
    assert not [w for w in warned if "no training row of theirs" in str(w.message)]
    # pandas writes an empty list as "[]": not a class named "[]".
    (tmp_path / "empty.csv").write_text("path,label,split\n0.png,[],train\n1.png,cat,train\n")
    with pytest.raises(mmtl_tf.DataError, match=r"empty.csv:2: label '\[\]' looks like a list"):
        load_image_label_records(str(tmp_path / "empty.csv"), "train", task="multilabel")
