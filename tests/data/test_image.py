import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import mmtl_tf
from mmtl_tf.data.image import (augment_image, decode_image, preprocess_image_batch,
                                 preprocess_image_bytes)


def _encode(array, fmt="PNG", mode=None, **save):
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt, **save)
    return buf.getvalue()


def test_rgba_png_is_composited_on_white_like_pil():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (9, 7, 4)).astype("uint8")
    rgba[0, 0, 3] = 0      # fully transparent pixel
    rgba[0, 1, 3] = 255    # opaque pixel
    got = decode_image(tf.constant(_encode(rgba))).numpy()
    # Independent reference: PIL alpha compositing onto a white canvas.
    canvas = Image.new("RGBA", (7, 9), (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(canvas, Image.fromarray(rgba, "RGBA")).convert("RGB"))
    assert got.dtype == np.uint8
    np.testing.assert_allclose(got, expected, atol=1.0)
    np.testing.assert_array_equal(got[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(got[0, 1], rgba[0, 1, :3])


def test_grayscale_and_rgb_decode():
    gray = np.arange(12, dtype="uint8").reshape(3, 4) * 20
    out = decode_image(tf.constant(_encode(gray))).numpy()
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 2], gray)
    rgb = np.random.default_rng(1).integers(0, 256, (5, 6, 3)).astype("uint8")
    np.testing.assert_array_equal(decode_image(tf.constant(_encode(rgb))).numpy(), rgb)


def test_resize_and_center_crop_keeps_the_centre():
    # A wide image: left third red, middle third green, right third blue.
    img = np.zeros((30, 90, 3), "uint8")
    img[:, :30, 0] = 255
    img[:, 30:60, 1] = 255
    img[:, 60:, 2] = 255
    out = preprocess_image_bytes(tf.constant(_encode(img)), (20, 20), crop=True).numpy()
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    # Scaled to 20x60 then the central 20 columns are the green third.
    assert out[:, 2:-2, 1].min() > 240 and out[:, 2:-2, 0].max() < 15
    stretched = preprocess_image_bytes(tf.constant(_encode(img)), (20, 20), crop=False).numpy()
    assert stretched[:, 1, 0].min() > 240 and stretched[:, -2, 2].min() > 240


def test_grayscale_option_and_jpeg():
    rgb = np.random.default_rng(2).integers(0, 256, (40, 40, 3)).astype("uint8")
    out = preprocess_image_bytes(tf.constant(_encode(rgb, "JPEG")), (16, 16), grayscale=True)
    assert out.shape == (16, 16, 1)


def test_fast_path_and_conversion_in_one_dataset_map():
    # A Dataset.map sees images that skip the conversion (RGB at the target
    # size) next to ones that need it (gray, alpha, other sizes); each must come
    # out as an independent reference says, and as the eager call does.
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (20, 20, 3)).astype("uint8")
    gray = rng.integers(0, 256, (20, 20)).astype("uint8")
    rgba = rng.integers(0, 256, (20, 20, 4)).astype("uint8")
    big = rng.integers(0, 256, (40, 60, 3)).astype("uint8")
    files = [_encode(rgb), _encode(gray), _encode(rgba), _encode(big), _encode(rgb, "JPEG")]
    ds = tf.data.Dataset.from_tensor_slices(files).map(
        lambda b: preprocess_image_bytes(b, (20, 20)))
    got = [x.numpy() for x in ds]
    np.testing.assert_array_equal(got[0], rgb)
    np.testing.assert_array_equal(got[1], np.repeat(gray[..., None], 3, axis=-1))
    canvas = Image.new("RGBA", (20, 20), (255, 255, 255, 255))
    composited = np.asarray(
        Image.alpha_composite(canvas, Image.fromarray(rgba, "RGBA")).convert("RGB"))
    np.testing.assert_allclose(got[2], composited, atol=1.0)
    # 40x60 → centre 40x40 → 20x20: bilinear with half-pixel centres at
    # exactly 2x is the mean of each 2x2 block.
    centre = big[:, 10:50].astype("float64")
    blocks = centre.reshape(20, 2, 20, 2, 3).mean(axis=(1, 3))
    assert np.abs(got[3].astype("float64") - blocks).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(got[4], tf.io.decode_jpeg(files[4]).numpy())
    for encoded, out in zip(files, got):
        np.testing.assert_array_equal(
            preprocess_image_bytes(tf.constant(encoded), (20, 20)).numpy(), out)


def test_conversion_is_traced_once_for_many_datasets():
    from mmtl_tf.data.image import _converter

    convert = _converter((12, 14), True, False)
    for _ in range(4):
        ds = tf.data.Dataset.from_tensors(_encode(np.zeros((30, 30, 3), "uint8"))).map(
            lambda b: preprocess_image_bytes(b, (12, 14)))
        assert next(iter(ds)).shape == (12, 14, 3)
    assert convert.traced.experimental_get_tracing_count() == 1


def test_augmentation_is_deterministic_per_seed_and_keeps_shape():
    img = tf.constant(np.random.default_rng(3).integers(0, 256, (32, 32, 3)).astype("uint8"))
    a = augment_image(img, tf.constant([1, 2], tf.int64)).numpy()
    b = augment_image(img, tf.constant([1, 2], tf.int64)).numpy()
    c = augment_image(img, tf.constant([5, 9], tf.int64)).numpy()
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_augmentation_takes_images_of_unknown_size_and_refuses_batches():
    img = np.random.default_rng(4).integers(0, 256, (20, 28, 3)).astype("uint8")
    seed = tf.constant([1, 2], tf.int64)
    # Straight from decode_image the size is unknown until run time.
    ds = tf.data.Dataset.from_tensors(_encode(img)).map(
        lambda b: augment_image(decode_image(b), seed))
    assert ds.element_spec.shape.as_list() == [None, None, 3]
    out = next(iter(ds)).numpy()
    # The same augmentation as for the same image of known size.
    np.testing.assert_array_equal(out, augment_image(tf.constant(img), seed).numpy())
    with pytest.raises(ValueError, match=r"one image of shape .*got shape \(4, 16, 16, 3\): "
                                         "augment before batching"):
        augment_image(tf.zeros((4, 16, 16, 3), tf.uint8), seed)


def test_decoded_image_dataset_names_bad_files(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_encode(np.zeros((8, 8, 3), "uint8")))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    paths = [str(good), str(corrupt), str(empty), str(missing)]
    with pytest.raises(mmtl_tf.DataError) as err:
        mmtl_tf.data.decoded_image_dataset(paths, (8, 8))
    message = str(err.value)
    assert "3 bad image files" in message
    assert "corrupt.png: cannot decode image" in message
    assert "empty.jpg: empty file" in message
    assert "missing.png: file not found" in message
    # The problem in plain words: no TensorFlow node names or op tags.
    assert "{{function_node" not in message and "[Op:" not in message
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 3 bad image files"):
        ds, kept = mmtl_tf.data.decoded_image_dataset(paths, (8, 8), on_error="skip")
    assert kept == [0]
    assert [int(i) for i, _ in ds] == [0]


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"),
                                       ("BMP", "RGB"), ("WEBP", "RGB"), ("PNG", "RGBA")])
def test_the_batch_format_check_passes_every_format_decode_image_reads(fmt, mode):
    buffer = io.BytesIO()
    Image.new(mode, (12, 6), (200, 30, 10)[:len(mode)] if mode != "P" else 3).save(buffer, fmt)
    batch = tf.function(lambda x: mmtl_tf.data.preprocess_image_batch(x, (4, 4)))(
        tf.constant([buffer.getvalue()] * 2))
    assert batch.shape == (2, 4, 4, 3)


def test_the_batch_format_check_names_what_it_refuses():
    import base64

    from mmtl_tf.data.image import _BASE64_STARTS, _image_format_checks

    png = _encode(np.zeros((8, 8, 3), "uint8"))
    jpeg = _encode(np.zeros((8, 8, 3), "uint8"), "JPEG")
    # Each listed start is how base64 of such a file begins.
    encoded = [base64.b64encode(png), base64.b64encode(jpeg),
               base64.urlsafe_b64encode(jpeg)]
    assert all(any(e.startswith(s.encode()) for s in _BASE64_STARTS) for e in encoded)

    @tf.function
    def check(items, name):
        with tf.control_dependencies(_image_format_checks(items, name)):
            return tf.identity(items)

    assert check(tf.constant([png, jpeg]), "image_bytes").shape == (2,)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pics: base64 text.*\] \[0 2\]"):
        check(tf.constant([encoded[0], png, b"data:image/png;base64,iVBOR"]), "pics")
    # Items shorter than the signatures are compared safely; a cut file that
    # starts right (png[:8]) passes, and its decoder fails later.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not JPEG.*\] \[0 1 3\]"):
        check(tf.constant([b"\xff", b"RIFF\x00\x00\x00\x00WAVE", png[:8], b"BZ"]), "x")


def test_without_the_checking_pass_a_bad_file_still_stops_iteration(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_encode(np.zeros((8, 8, 3), "uint8")))
    (tmp_path / "text.png").write_text("not an image")
    paths = [str(good), str(tmp_path / "text.png")]
    ds, kept = mmtl_tf.data.decoded_image_dataset(paths, (8, 8), validate=False)
    assert kept == [0, 1]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        list(ds)
    ds, _ = mmtl_tf.data.decoded_image_dataset(paths, (8, 8), validate=False, on_error="skip")
    assert [int(i) for i, _ in ds] == [0]


def test_nothing_left_after_skipping_and_a_folder_are_clear_errors(tmp_path):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "text.png").write_text("not an image")
    paths = [str(tmp_path / "folder.png"), str(tmp_path / "text.png")]
    with pytest.raises(mmtl_tf.DataError, match=r"(?s)all 2 image files are bad.*"
                                                r"folder.png: a folder, not an image file"):
        mmtl_tf.data.decoded_image_dataset(paths, (8, 8), on_error="skip")


@pytest.mark.parametrize("size", [(0, 8), (-3, 8), (8,), (8.5, 8), None])
def test_bad_image_size_is_named_not_blamed_on_the_files(tmp_path, size):
    good = tmp_path / "good.png"
    good.write_bytes(_encode(np.zeros((8, 8, 3), "uint8")))
    with pytest.raises(ValueError, match=r"image_size=.*two positive integers"):
        mmtl_tf.data.decoded_image_dataset([str(good)], size, on_error="skip")
    with pytest.raises(ValueError, match=r"image_size=.*two positive integers"):
        preprocess_image_bytes(tf.constant(good.read_bytes()), size)


def test_a_file_used_by_several_rows_is_loaded_and_stored_once(tmp_path):
    from mmtl_tf.data.file_dataset import checked_file_dataset

    loads = []

    def count(path):
        loads.append(path.decode() if isinstance(path, bytes) else path)
        return np.full((2, 2), len(os.path.basename(loads[-1])), np.int32)

    def load(path):
        return tf.ensure_shape(tf.numpy_function(count, [path], tf.int32), [2, 2])

    for name in ("a", "bb", "ccc"):
        (tmp_path / name).write_text("x")
    a, b, c = (str(tmp_path / n) for n in ("a", "bb", "ccc"))
    paths = [a, b, a, c, a]  # three rows share one file
    ds, kept = checked_file_dataset(paths, load, lambda p: "?", "files")
    assert sorted(loads) == sorted([a, b, c])  # one load per distinct file
    assert kept == [0, 1, 2, 3, 4] and int(ds.cardinality()) == 5
    got = [(int(i), int(v[0, 0])) for i, v in ds]
    assert got == [(0, 1), (1, 2), (2, 1), (3, 3), (4, 1)]  # the rows' order
    assert [(int(i), int(v[0, 0])) for i, v in ds] == got and len(loads) == 3  # cached


@pytest.mark.parametrize("shared", [False, True])
def test_the_checking_pass_drops_its_iterator_off_the_calling_thread(tmp_path, monkeypatch,
                                                                        shared):
    # Deleting the checking pass's iterator sometimes waited 0.2-0.3 s (no
    # CPU) for TensorFlow's autotuner: the deletion now runs on another
    # thread, which only works if nothing else holds the iterator.
    import sys
    import threading
    import weakref

    from mmtl_tf.data import file_dataset

    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        path.write_bytes(_encode(np.full((4, 4, 3), 10 * i, "uint8")))
        paths.append(str(path))
    if shared:
        paths.append(paths[0])  # a file used by two rows: the store's own pass
    released = []
    real = file_dataset._release_in_background

    def record(holder):
        (iterator,) = holder
        assert isinstance(iterator, tf.data.Iterator)
        with pytest.raises(StopIteration):
            next(iterator)  # exhausted
        # The list, `iterator` and getrefcount's argument: the caller kept none.
        released.append(sys.getrefcount(iterator))
        weakref.finalize(iterator, lambda: released.append(threading.current_thread().name))
        del iterator
        real(holder)

    monkeypatch.setattr(file_dataset, "_release_in_background", record)
    images, kept = mmtl_tf.data.decoded_image_dataset(paths, (4, 4))
    for thread in threading.enumerate():
        if thread.name == "mmtl_tf-release-iterator":
            thread.join()
    assert released == [3, "mmtl_tf-release-iterator"]
    assert kept == list(range(len(paths)))
    assert [int(image[0, 0, 0]) for _, image in images] == [0, 10, 20] + [0] * shared


def test_with_cache_files_the_checking_iterator_is_dropped_before_returning(tmp_path,
                                                                             monkeypatch):
    # Its deletion finishes the cache files: in the background it could end
    # after a DataError's clean-up removed their folder (`--cache DIR`).
    import weakref

    from mmtl_tf.data import file_dataset

    def refuse(holder):
        raise AssertionError("released in the background")

    monkeypatch.setattr(file_dataset, "_release_in_background", refuse)
    deleted = []
    real_iter = tf.data.Dataset.__iter__

    def tracked(self):
        iterator = real_iter(self)
        weakref.finalize(iterator, deleted.append, True)
        return iterator

    monkeypatch.setattr(tf.data.Dataset, "__iter__", tracked)
    path = tmp_path / "a.png"
    path.write_bytes(_encode(np.full((4, 4, 3), 5, "uint8")))
    (tmp_path / "cache").mkdir()
    images, kept = mmtl_tf.data.decoded_image_dataset([str(path)], (4, 4),
                                                      cache=str(tmp_path / "cache" / "c"))
    assert deleted == [True] and kept == [0]
    assert [int(image[0, 0, 0]) for _, image in images] == [5]
    # And when a bad file raises (its traceback holds the caller's frames).
    (tmp_path / "bad.png").write_bytes(b"not an image")
    deleted.clear()
    with pytest.raises(mmtl_tf.DataError, match="bad.png"):
        mmtl_tf.data.decoded_image_dataset([str(path), str(tmp_path / "bad.png")], (4, 4),
                                           cache=str(tmp_path / "cache" / "d"))
    assert deleted == [True]  # the checking pass's, gone before the error reached us


def test_a_bad_file_used_by_several_rows_is_named_once_with_its_rows(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_encode(np.full((8, 8, 3), 7, "uint8")))
    other = tmp_path / "other.png"
    other.write_bytes(_encode(np.full((8, 8, 3), 9, "uint8")))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    paths = [str(p) for p in (good, bad, good, other, bad, good)]
    rows = [f"captions.csv:{k + 2}" for k in range(len(paths))]
    with pytest.raises(mmtl_tf.DataError) as err:
        mmtl_tf.data.decoded_image_dataset(paths, (8, 8), locations=rows)
    message = str(err.value)
    assert "1 bad image file:" in message
    assert f"captions.csv:3, captions.csv:6 ({bad}): cannot decode image" in message
    with pytest.warns(mmtl_tf.DataWarning, match=r"skipped 1 bad image file") as caught:
        ds, kept = mmtl_tf.data.decoded_image_dataset(paths, (8, 8), on_error="skip",
                                                      locations=rows)
    assert "captions.csv:3, captions.csv:6" in str(caught[0].message)
    assert kept == [0, 2, 3, 5]  # every row of the bad file is dropped
    assert int(ds.cardinality()) == 4
    assert [(int(i), int(img[0, 0, 0])) for i, img in ds] == [(0, 7), (1, 7), (2, 9), (3, 7)]
    with pytest.raises(mmtl_tf.DataError, match=r"all 1 image files are bad|the only image"):
        mmtl_tf.data.decoded_image_dataset([str(bad), str(bad)], (8, 8), on_error="skip")


def _folder_of(tmp_path, kinds, size=(13, 11)):
    """Image files of the given kinds, in that order: "ready" (an RGB JPEG of
    `size`), "png" (RGBA PNG of `size`), "big" (a larger JPEG), "gray" (a
    one-channel JPEG of `size`), "cmyk" (a CMYK JPEG of `size`), "cut" (a
    ready JPEG cut short after its header), "missing"."""
    rng = np.random.default_rng(7)
    paths = []
    for k, kind in enumerate(kinds):
        path = tmp_path / f"{k}_{kind}.{'png' if kind == 'png' else 'jpg'}"
        if kind in ("ready", "cut"):
            data = _encode(rng.integers(0, 256, (*size, 3)).astype("uint8"), "JPEG")
            # "cut": the whole header, then only a few bytes of image data.
            path.write_bytes(data if kind == "ready" else data[:data.index(b"\xff\xda") + 30])
        elif kind == "png":
            path.write_bytes(_encode(rng.integers(0, 256, (*size, 4)).astype("uint8")))
        elif kind == "big":
            path.write_bytes(_encode(rng.integers(0, 256, (40, 30, 3)).astype("uint8"), "JPEG"))
        elif kind == "gray":
            path.write_bytes(_encode(rng.integers(0, 256, size).astype("uint8"), "JPEG"))
        elif kind == "cmyk":
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (*size, 3)).astype("uint8")).convert(
                "CMYK").save(buf, format="JPEG")
            path.write_bytes(buf.getvalue())
        paths.append(str(path))
    return paths


def test_jpegs_of_the_model_size_are_checked_without_the_conversion(tmp_path):
    from mmtl_tf.data.image import _converter

    size = (17, 9)
    _converter.cache_clear()  # a new conversion function, traced here only
    convert = _converter(size, True, False)
    ready = _folder_of(tmp_path, ["ready"] * 4, size)
    ds, kept = mmtl_tf.data.decoded_image_dataset(ready, size)
    assert kept == [0, 1, 2, 3]
    # The conversion was not even traced: no epoch's iterator instantiates it.
    assert convert.traced.experimental_get_tracing_count() == 0
    for _ in range(2):  # the cache, twice
        got = [(int(i), image.numpy()) for i, image in ds]
        assert [i for i, _ in got] == kept
        for (_, image), path in zip(got, ready):
            np.testing.assert_array_equal(image, tf.io.decode_jpeg(Path(path).read_bytes()))


def _count_quick_loads(monkeypatch):
    from mmtl_tf.data import image

    traced = []
    real = image._load_ready_jpeg

    def spy(path, image_size):
        traced.append(image_size)
        return real(path, image_size)

    monkeypatch.setattr(image, "_load_ready_jpeg", spy)
    return traced


def _count_loaded_rows(monkeypatch):
    """The number of rows of each pass's dataset (`file_dataset._loading`)."""
    from mmtl_tf.data import file_dataset

    counts = []
    real = file_dataset._loading

    def spy(rows, *args):
        counts.append(len(rows))
        return real(rows, *args)

    monkeypatch.setattr(file_dataset, "_loading", spy)
    return counts


@pytest.mark.parametrize("first", ["ready", "png"])
def test_files_the_quick_pass_leaves_are_converted_in_row_order(tmp_path, monkeypatch,
                                                                  first):
    from mmtl_tf.data import image as image_module

    size = (13, 11)
    kinds = [first, "big", "ready", "png", "cut", "gray", "missing", "cmyk", "ready"]
    paths = _folder_of(tmp_path, kinds, size)
    monkeypatch.setattr(image_module, "_READY_SAMPLE", 1)  # the first file decides
    quick = _count_quick_loads(monkeypatch)
    passes = _count_loaded_rows(monkeypatch)
    rows = [f"captions.csv:{k + 2}" for k in range(len(paths))]
    with pytest.raises(mmtl_tf.DataError) as err:
        mmtl_tf.data.decoded_image_dataset(paths, size, locations=rows)
    message = str(err.value)
    assert "2 bad image files" in message
    assert f"captions.csv:6 ({paths[4]}): cannot decode image" in message
    assert f"captions.csv:8 ({paths[6]}): file not found" in message
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad image files"):
        ds, kept = mmtl_tf.data.decoded_image_dataset(paths, size, on_error="skip",
                                                      locations=rows)
    # The quick pass ran only where the first file is a JPEG of the size,
    # and then the second pass loaded the six rows it left.
    assert bool(quick) == (first == "ready")
    if first == "ready":
        assert passes[-2:] == [9, 6]
    else:
        assert passes[-1:] == [9]
    assert kept == [0, 1, 2, 3, 5, 7, 8]
    assert int(ds.cardinality()) == 7
    for _ in range(2):
        got = [(int(i), image.numpy()) for i, image in ds]
        assert [i for i, _ in got] == list(range(7))  # kept rows, renumbered
        for (_, image), k in zip(got, kept):
            # Each as the eager preprocessing of the file alone gives it.
            expected = preprocess_image_bytes(tf.constant(Path(paths[k]).read_bytes()), size)
            np.testing.assert_array_equal(image, expected.numpy())


def test_the_quick_pass_with_only_bad_files_left_or_none_good(tmp_path, monkeypatch):
    from mmtl_tf.data import image as image_module

    size = (13, 11)
    monkeypatch.setattr(image_module, "_READY_SAMPLE", 1)  # the first file decides
    quick = _count_quick_loads(monkeypatch)
    paths = _folder_of(tmp_path, ["ready", "cut", "ready", "missing"], size)
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad image files"):
        ds, kept = mmtl_tf.data.decoded_image_dataset(paths, size, on_error="skip")
    assert quick and kept == [0, 2] and int(ds.cardinality()) == 2
    got = [(int(i), image.numpy()) for i, image in ds]
    assert [i for i, _ in got] == [0, 1]
    for (_, image), k in zip(got, kept):
        np.testing.assert_array_equal(image, tf.io.decode_jpeg(Path(paths[k]).read_bytes()))
    # A first file whose header is fine but whose data is cut: the quick
    # pass runs, and nothing is left.
    quick.clear()
    (tmp_path / "cut").mkdir()
    cut = _folder_of(tmp_path / "cut", ["cut", "cut"], size)
    with pytest.raises(mmtl_tf.DataError, match=r"all 2 image files are bad"):
        mmtl_tf.data.decoded_image_dataset(cut, size, on_error="skip")
    assert quick


def test_sampled_headers_decide_whether_the_quick_pass_is_tried(tmp_path, monkeypatch):
    from mmtl_tf.data.image import _looks_ready

    size = (13, 11)
    kinds = ["ready"] * 20
    paths = _folder_of(tmp_path, kinds, size)
    assert _looks_ready(paths, size) and _looks_ready(paths[:1], size)
    assert not _looks_ready([], size) and not _looks_ready(paths, (11, 13))
    # Only sampled files count (20 files: 0, 3, 5, 8, 11, 14, 16, 19)...
    (tmp_path / "1").mkdir()
    unsampled = _folder_of(tmp_path / "1", ["big"], size)
    assert _looks_ready(paths[:1] + unsampled + paths[2:], size)
    # ... and any of them that is not ready: the first, the last, one between.
    for k in (0, 19, 8):
        (tmp_path / str(k)).mkdir()
        other = _folder_of(tmp_path / str(k), ["big"], size)
        assert not _looks_ready(paths[:k] + other + paths[k + 1:], size)
    # A folder where the first file is ready but most are not: one full pass.
    (tmp_path / "mixed").mkdir()
    mixed = _folder_of(tmp_path / "mixed", ["ready", "big", "png", "big", "ready"], size)
    quick = _count_quick_loads(monkeypatch)
    passes = _count_loaded_rows(monkeypatch)
    ds, kept = mmtl_tf.data.decoded_image_dataset(mixed, size)
    assert not quick and passes == [5] and kept == [0, 1, 2, 3, 4]
    got = [(int(i), image.numpy()) for i, image in ds]
    assert [i for i, _ in got] == kept
    for (_, image), path in zip(got, mixed):
        expected = preprocess_image_bytes(tf.constant(Path(path).read_bytes()), size)
        np.testing.assert_array_equal(image, expected.numpy())


def _exif_jpeg(pixels, orientation, endian=">", camera_layout=False):
    """JPEG bytes of `pixels` with an Exif Orientation tag (Pillow's writer,
    in big- or little-endian TIFF order); `camera_layout` drops the JFIF
    APP0 segment, so that the Exif APP1 comes right after the start, as
    cameras write it."""
    from PIL import Image as PILImage

    exif = PILImage.Exif()
    exif.endian = endian
    exif[0x0110] = "a phone"  # another tag, before Orientation in the IFD
    exif[0x0112] = orientation
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG", quality=95, exif=exif.tobytes())
    data = out.getvalue()
    assert data[2:4] == b"\xff\xe0" and b"Exif\x00\x00" in data[:64]
    if camera_layout:
        data = data[:2] + data[4 + int.from_bytes(data[4:6], "big"):]
        assert data[2:4] == b"\xff\xe1" and data[6:12] == b"Exif\x00\x00"
    return data


def _asymmetric(height, width):
    rng = np.random.default_rng(height * 100 + width)
    pixels = rng.integers(0, 60, (height, width, 3)).astype("uint8")
    pixels[:height // 3, :width // 4] = (250, 30, 30)   # a red top-left corner
    pixels[-2:, :, 1] = 220                             # a green bottom edge
    return pixels


@pytest.mark.parametrize("endian", [">", "<"])
@pytest.mark.parametrize("camera_layout", [False, True])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pil_applies_it(orientation, camera_layout, endian):
    # tf.io.decode_jpeg ignores the tag: a portrait phone photo (6) came out
    # lying on its side, unlike in every viewer and annotation tool.
    from PIL import Image as PILImage
    from PIL import ImageOps

    from mmtl_tf.data.image import exif_orientation

    data = _exif_jpeg(_asymmetric(24, 40), orientation, endian, camera_layout)
    assert int(exif_orientation(tf.constant(data))) == orientation
    stored = tf.io.decode_jpeg(data).numpy()  # the pixels as stored, TensorFlow's decoding
    # The reference: Pillow turning those same pixels by the file's own tag.
    shown = PILImage.fromarray(stored)
    shown.info["exif"] = PILImage.open(io.BytesIO(data)).info["exif"]
    expected = np.asarray(ImageOps.exif_transpose(shown))
    assert expected.shape == ((24, 40, 3) if orientation <= 4 else (40, 24, 3))
    np.testing.assert_array_equal(decode_image(tf.constant(data)).numpy(), expected)
    size = expected.shape[:2]  # no resize: the model's size is the turned one
    np.testing.assert_array_equal(
        preprocess_image_bytes(tf.constant(data), size).numpy(), expected)
    # In a graph (Dataset.map, the exported model's signature) too.
    batch = mmtl_tf.data.preprocess_image_batch(tf.constant([data, data]), size)
    np.testing.assert_array_equal(batch.numpy()[1], expected)


def test_unreadable_or_missing_exif_leaves_the_image_as_stored():
    from mmtl_tf.data.image import exif_orientation

    data = _exif_jpeg(_asymmetric(16, 24), 6)
    stored = tf.io.decode_jpeg(data).numpy()
    start = data.index(b"Exif\x00\x00") + 6
    broken = {
        "no Exif": tf.io.encode_jpeg(stored).numpy(),
        "bad byte order": data[:start] + b"XX" + data[start + 2:],
        "IFD offset past the end": data[:start + 4] + b"\x7f\xff\xff\xff" + data[start + 8:],
        "orientation 9": data.replace(b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06",
                                      b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x09"),
        "not in an APP1 segment": data[:start - 10] + b"\xff\xe2" + data[start - 8:],
        "cut after the marker": data[:start + 3],
    }
    assert broken["orientation 9"] != data
    for name, damaged in broken.items():
        assert int(exif_orientation(tf.constant(damaged))) == 1, name
    for name in ("bad byte order", "orientation 9", "not in an APP1 segment"):
        np.testing.assert_array_equal(decode_image(tf.constant(broken[name])).numpy(), stored)
    png = io.BytesIO()
    Image.fromarray(stored).save(png, "PNG")
    assert int(exif_orientation(tf.constant(png.getvalue()))) == 1


def test_a_turned_jpeg_of_the_model_size_is_not_taken_by_the_quick_pass(tmp_path,
                                                                         monkeypatch):
    # The quick pass takes JPEGs whose header says the model's size as they
    # are: a square photo with orientation 6 must still be turned.
    size = (13, 13)
    paths = _folder_of(tmp_path, ["ready"] * 8, size)
    turned = tmp_path / "turned.jpg"
    turned.write_bytes(_exif_jpeg(_asymmetric(*size), 6))
    paths.insert(4, str(turned))  # not among the sampled files (`_looks_ready`)
    quick = _count_quick_loads(monkeypatch)
    passes = _count_loaded_rows(monkeypatch)
    ds, kept = mmtl_tf.data.decoded_image_dataset(paths, size)
    assert quick and passes == [9, 1] and kept == list(range(9))
    got = {int(i): image.numpy() for i, image in ds}
    stored = tf.io.decode_jpeg(turned.read_bytes()).numpy()
    np.testing.assert_array_equal(got[4], np.rot90(stored, k=-1))  # 90° clockwise
    np.testing.assert_array_equal(got[0], tf.io.decode_jpeg(Path(paths[0]).read_bytes()))


def test_the_sample_and_the_quick_load_take_files_too_short_for_an_image(tmp_path):
    # A 6-byte "\x89PNG\r\n" among the sampled files made the Exif test read
    # past its end: TensorFlow's error held the bytes, and Python failed to
    # decode that message (UnicodeDecodeError, not an OpError), so training
    # stopped instead of skipping the file.
    from mmtl_tf.data.image import _is_ready_jpeg, _looks_ready

    size = (13, 11)
    paths = _folder_of(tmp_path, ["ready"] * 3, size)
    for i, content in enumerate([b"\x89PNG\r\n", b"\xff\xd8\xff\xe0\x00", b""]):
        (tmp_path / f"short{i}.jpg").write_bytes(content)
        assert not _is_ready_jpeg(str(tmp_path / f"short{i}.jpg"), size)
        assert not _looks_ready([str(tmp_path / f"short{i}.jpg")] + paths, size)
        with pytest.warns(mmtl_tf.DataWarning, match=f"short{i}.jpg"):
            ds, kept = mmtl_tf.data.decoded_image_dataset(
                paths + [str(tmp_path / f"short{i}.jpg")], size, on_error="skip")
        assert kept == [0, 1, 2]


def _photo(height, width, noise=120, quality=95, seed=0):
    """JPEG bytes of a noisy gradient (a photo's file size: 64 KiB or more
    from about 300×400 on)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1)
    pixels = np.clip(pixels + rng.integers(0, noise, pixels.shape), 0, 255).astype("uint8")
    return _encode(pixels, "JPEG", quality=quality)


def _draft(data, ratio):
    """Pillow's decoding of JPEG bytes scaled by 1/`ratio` in libjpeg (the
    reference for TensorFlow's `ratio`)."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (image.width // ratio, image.height // ratio))
    assert image.width == -(-Image.open(io.BytesIO(data)).width // ratio)
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("shape, size, ratio", [
    ((900, 1200), (100, 100), 8),   # shorter side 9x the target's larger one
    ((500, 700), (100, 100), 4),
    ((400, 300), (60, 120), 2),     # the target's larger side counts
    ((330, 420), (100, 100), 2),
    ((190, 420), (100, 100), 1),    # under twice the target: whole
])
def test_large_jpegs_are_decoded_at_a_reduced_scale(shape, size, ratio):
    # A 12-megapixel photo was decoded whole to be shrunk to 224 px; libjpeg
    # can scale by 1/2, 1/4 or 1/8 while decoding, for a fraction of the work.
    from mmtl_tf.data.image import decode_upright, resize_and_crop

    data = _photo(*shape)
    assert len(data) >= 65536
    decoded = decode_upright(tf.constant(data), min_side=max(size)).numpy()
    reference = _draft(data, ratio) if ratio > 1 else tf.io.decode_jpeg(data).numpy()
    assert decoded.shape == reference.shape
    assert np.abs(decoded.astype(int) - reference).max() <= 4  # Pillow's upsampling at 1/2
    assert min(decoded.shape[:2]) >= max(size)
    got = preprocess_image_bytes(tf.constant(data), size).numpy()
    np.testing.assert_array_equal(got, resize_and_crop(tf.constant(decoded), size).numpy())
    # A graph (Dataset.map, an exported model's signature) decodes it the same.
    batch = mmtl_tf.data.preprocess_image_batch(tf.constant([data]), size).numpy()
    np.testing.assert_array_equal(batch[0], got)


def test_a_reduced_photo_looks_like_the_whole_one_shrunk():
    from mmtl_tf.data.image import resize_and_crop

    data = _photo(1200, 1600, noise=24)  # a smooth photo: what the eye sees
    assert len(data) >= 65536
    for size in ((224, 224), (100, 160), (64, 64)):
        got = preprocess_image_bytes(tf.constant(data), size).numpy().astype(int)
        whole = resize_and_crop(tf.io.decode_jpeg(data), size).numpy()
        assert np.abs(got - whole).mean() < 2, size


def test_small_files_and_other_formats_are_decoded_whole():
    from mmtl_tf.data.image import decode_upright

    flat = np.full((900, 1200, 3), 200, "uint8")
    # A large image in a small file; a PNG.
    for data in (_encode(flat, "JPEG", quality=90), _encode(flat)):
        assert len(data) < 65536
        decoded = decode_upright(tf.constant(data), min_side=100).numpy()
        assert decoded.shape == (900, 1200, 3)
    data = _photo(900, 1200)
    assert decode_upright(tf.constant(data)).shape == (900, 1200, 3)  # no min_side
    assert decode_image(tf.constant(data)).shape == (900, 1200, 3)


def test_a_turned_photo_is_reduced_then_turned(tmp_path):
    from PIL import ImageOps

    from mmtl_tf.data.image import decode_upright

    pixels = _asymmetric(600, 900)
    rng = np.random.default_rng(1)
    pixels = np.clip(pixels + rng.integers(0, 40, pixels.shape), 0, 255).astype("uint8")
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90° clockwise to show
    data = _encode(pixels, "JPEG", quality=92, exif=exif.tobytes())
    assert len(data) >= 65536
    decoded = decode_upright(tf.constant(data), min_side=100).numpy()
    shown = Image.fromarray(_draft(data, 4))
    shown.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(shown))
    assert decoded.shape == expected.shape == (225, 150, 3)
    assert np.abs(decoded.astype(int) - expected).max() == 0
    # Through the checking pass of a dataset: the same pixels.
    (tmp_path / "a.jpg").write_bytes(data)
    ds, kept = mmtl_tf.data.decoded_image_dataset([str(tmp_path / "a.jpg")], (100, 100))
    image = next(iter(ds))[1].numpy()
    np.testing.assert_array_equal(
        image, preprocess_image_bytes(tf.constant(data), (100, 100)).numpy())


def test_a_damaged_photo_is_named_with_the_decoders_message(tmp_path):
    # The error of an op inside a branch ends with a "[[{{node ...}}]]" line,
    # which the message showed instead of the decoder's words.
    (tmp_path / "bad.jpg").write_bytes(_photo(600, 800)[:100000])  # cut short
    (tmp_path / "ok.jpg").write_bytes(_photo(600, 800, seed=2))
    with pytest.raises(mmtl_tf.DataError) as e:
        mmtl_tf.data.decoded_image_dataset([str(tmp_path / "ok.jpg"), str(tmp_path / "bad.jpg")],
                                           (64, 64))
    message = str(e.value)
    assert "bad.jpg: cannot decode image (jpeg::Uncompress failed" in message, message
    assert "ok.jpg" not in message and "[[" not in message and "{{node" not in message


def test_a_file_cut_short_is_said_to_be(tmp_path):
    # An interrupted download or copy: the decoder's words alone ("Invalid
    # PNG data", "jpeg::Uncompress failed") do not say so.
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype("uint8")
    jpeg, png = _encode(rgb, "JPEG"), _encode(rgb)
    files = {"cut.jpg": jpeg[:len(jpeg) // 2], "cut.png": png[:len(png) // 2],
             # Damaged inside but ending as a JPEG must: no such note.
             "inside.jpg": jpeg[:3] + b"\x00" * 64 + jpeg[67:],
             "ok.png": png, "padded.jpg": jpeg[:len(jpeg) // 2] + b"\0" * 40}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(mmtl_tf.DataError) as e:
        mmtl_tf.data.decoded_image_dataset([str(tmp_path / n) for n in files], (16, 16))
    why = dict(e.value.problems)
    note = "the file ends without the {}: it looks cut short, as an interrupted download or copy"
    assert note.format("JPEG end marker") in why[str(tmp_path / "cut.jpg")]
    assert note.format("JPEG end marker") in why[str(tmp_path / "padded.jpg")]
    assert note.format("PNG end chunk") in why[str(tmp_path / "cut.png")]
    assert why[str(tmp_path / "inside.jpg")].startswith("cannot decode image (")
    assert "cut short" not in why[str(tmp_path / "inside.jpg")]
    assert str(tmp_path / "ok.png") not in why


def test_a_file_that_is_no_image_says_what_it_is(tmp_path):
    # Scraped datasets hold web pages saved as .jpg (a failed download), and
    # a photo renamed .jpg may be an iPhone's HEIC: all were "Unknown image
    # file format" alone.
    files = {"page.jpg": b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title>",
             "denied.png": "Accès refusé, connectez-vous pour voir la photo".encode(),
             "photo.jpg": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 40,
             "scan.png": b"II*\x00\x08\x00\x00\x00" + b"\x00" * 40,
             "noise.jpg": bytes(range(1, 60)),
             "clip.jpg": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40,
             # Starts as a JPEG: the decoder's words (and the cut-short note).
             "cut.jpg": _encode(np.zeros((8, 8, 3), "uint8"), "JPEG")[:40]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(mmtl_tf.DataError) as e:
        mmtl_tf.data.decoded_image_dataset([str(tmp_path / n) for n in files], (8, 8))
    why = {os.path.basename(path): text for path, text in e.value.problems}
    assert why["page.jpg"].endswith(
        '; the file holds text, not an image: it starts with "<!DOCTYPE html> <html><head>'
        '<title>404 N" (a web page or message saved under an image\'s name, as a failed '
        "download leaves it)")
    assert '"Accès refusé, connectez-vous pour voir l"' in why["denied.png"]
    assert why["photo.jpg"].endswith("; the file is HEIF/AVIF (as iPhones save photos), which "
                                     "TensorFlow does not decode: convert it to JPEG or PNG")
    assert why["scan.png"].endswith("; the file is TIFF, which TensorFlow does not decode: "
                                    "convert it to JPEG or PNG")
    assert why["noise.jpg"].endswith("; its first bytes (01 02 03 04) are no image format's")
    # RIFF is WebP's container too: "its first bytes (52 49 46 46) are no image format's".
    assert why["clip.jpg"].endswith("; the file is WAV audio, not an image")
    assert "cut short" in why["cut.jpg"] and "text" not in why["cut.jpg"]


def test_the_sampled_headers_are_read_as_tensorflow_reads_them(tmp_path):
    # `_looks_ready` reads the sampled files' headers in Python (TensorFlow's
    # test, run eagerly, took about 4 ms a file); the quick load tests each
    # file again in the graph, so only what it decides must agree.
    from mmtl_tf.data.image import _is_ready_header, _is_ready_jpeg, _jpeg_header_shape

    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3)).astype("uint8")
    files = {
        "baseline": _encode(rgb, "JPEG", quality=90),
        "progressive": _encode(rgb, "JPEG", quality=90, progressive=True),
        "gray": _encode(rgb[..., 0], "JPEG", quality=90),
        "cmyk": _cmyk_jpeg(rgb),
        "restarts": _encode(rgb, "JPEG", quality=90, restart_marker_blocks=1),
        # A large segment before the frame header.
        "icc": _encode(rgb, "JPEG", quality=90, icc_profile=b"\x00" * 60000),
        "exif": _exif_jpeg(rgb, 1),
        "png": _encode(rgb),
        "cut": _encode(rgb, "JPEG", quality=90)[:5],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        try:
            expected = tuple(int(x) for x in tf.io.extract_jpeg_shape(data))
        except tf.errors.OpError:
            expected = None
        if name != "png":
            assert _jpeg_header_shape(data) == expected, name
        for size in ((30, 40), (40, 30)):
            try:
                ready = bool(_is_ready_header(tf.constant(data), size))
            except tf.errors.OpError:  # a header TensorFlow cannot read
                ready = False
            assert _is_ready_jpeg(str(tmp_path / name), size) == ready, (name, size)
    assert _is_ready_jpeg(str(tmp_path / "baseline"), (30, 40))
    assert not _is_ready_jpeg(str(tmp_path / "exif"), (30, 40))
    assert not _is_ready_jpeg(str(tmp_path / "missing"), (30, 40))


def _cmyk_jpeg(rgb):
    out = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_file_cache_prefix_used_again_never_reads_another_datasets_pixels(tmp_path):
    # tf.data reads complete cache files of a name whatever wrote them: a
    # prefix used again for another split gave the other split's images
    # (or an IndexError), for another size "Incompatible shapes".
    import os

    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (12, 10, 3)).astype("uint8")).save(paths[-1])
    prefix = str(tmp_path / "cache" / "x")
    os.mkdir(tmp_path / "cache")

    def pixels(files, size, cache):
        ds, _ = mmtl_tf.data.decoded_image_dataset(files, size, cache=cache)
        return np.stack([image for _, image in ds.as_numpy_iterator()])

    for files, size in ((paths[:3], (8, 8)), (paths[3:], (8, 8)), (paths[:3], (4, 4))):
        np.testing.assert_array_equal(pixels(files, size, prefix), pixels(files, size, False))
    written = sorted(os.listdir(tmp_path / "cache"))
    assert len(written) == 6 and all(n.startswith("x-") for n in written)
    # The same files and settings read their own cache again.
    np.testing.assert_array_equal(pixels(paths[:3], (8, 8), prefix),
                                  pixels(paths[:3], (8, 8), False))
    assert sorted(os.listdir(tmp_path / "cache")) == written
    # A file changed since: a new key (size and modification time).
    Image.fromarray(np.zeros((12, 10, 3), "uint8")).save(paths[0])
    os.utime(paths[0], ns=(1, 2 * 10**18))
    again = pixels(paths[:3], (8, 8), prefix)
    assert again[0].max() == 0
    assert len(os.listdir(tmp_path / "cache")) == 8


def test_a_file_cache_written_by_another_version_is_not_read(tmp_path, monkeypatch):
    # Decoding may change between mmtl_tf (or TensorFlow) versions: a cache
    # file written by another version under the same prefix must not be read.
    import os

    import mmtl_tf as package

    path = str(tmp_path / "a.png")
    Image.fromarray(np.full((6, 6, 3), 200, "uint8")).save(path)
    prefix = str(tmp_path / "cache" / "x")
    os.mkdir(tmp_path / "cache")

    def first_pixel():
        ds, _ = mmtl_tf.data.decoded_image_dataset([path], (6, 6), cache=prefix)
        return int(next(ds.as_numpy_iterator())[1][0, 0, 0])

    assert first_pixel() == 200
    written = sorted(os.listdir(tmp_path / "cache"))
    # The same file and settings, another version: its own cache files.
    monkeypatch.setattr(package, "__version__", "0.0.0-older")
    assert first_pixel() == 200
    assert len(os.listdir(tmp_path / "cache")) == 2 * len(written)
    monkeypatch.setattr(tf, "__version__", "2.0.0")
    first_pixel()
    assert len(os.listdir(tmp_path / "cache")) == 3 * len(written)
    # A prefix in a folder that does not exist fails up front (it was a
    # NotFoundError about a ".lockfile" at the first read).
    with pytest.raises(ValueError, match=r"cache='.*missing/x': the folder .*missing does not "
                                         r"exist; create it"):
        mmtl_tf.data.decoded_image_dataset([path], (6, 6), cache=str(tmp_path / "missing" / "x"))
    # "missing/" names files "missing/-KEY": the folder is "missing" (abspath
    # dropped the slash and checked tmp_path).
    with pytest.raises(ValueError, match=r"the folder .*missing does not exist"):
        mmtl_tf.data.decoded_image_dataset([path], (6, 6), cache=str(tmp_path / "missing") + "/")
    # "~" is the home folder, as on the command line (tf.data took it literally).
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    os.mkdir(tmp_path / "home")
    mmtl_tf.data.decoded_image_dataset([path], (6, 6), cache="~/x")
    assert any(name.startswith("x-") for name in os.listdir(tmp_path / "home"))


def _bmp(image):
    buf = io.BytesIO()
    image.save(buf, format="BMP")
    return buf.getvalue()


def test_8_bit_bmps_decode_to_their_palette_colours():
    rgb = np.random.default_rng(5).integers(0, 256, (6, 9, 3)).astype("uint8")
    for image in (Image.fromarray(rgb).quantize(16), Image.fromarray(rgb).convert("L")):
        data = _bmp(image)
        assert data[28] == 8  # bits per pixel: Paint's "256 colour bitmap"
        expected = np.asarray(image.convert("RGB"))
        np.testing.assert_array_equal(decode_image(tf.constant(data)).numpy(), expected)
        # The same in a graph, as in Dataset.map and in an exported model.
        served = tf.function(lambda b: preprocess_image_bytes(b, (6, 9), crop=False))
        np.testing.assert_array_equal(served(tf.constant(data)).numpy(), expected)


def test_bmps_tensorflow_cannot_decode_are_named_as_such(tmp_path):
    from mmtl_tf.data.image import _describe_failure

    path = tmp_path / "one_bit.bmp"
    path.write_bytes(_bmp(Image.fromarray(np.eye(8, dtype="uint8") * 255).convert("1")))
    assert _describe_failure(str(path), (8, 8), True, False) == (
        "cannot decode image: a 1-bit BMP, which TensorFlow does not decode (it decodes 8-, "
        "24- and 32-bit ones): save it as PNG or as a 24-bit BMP")
    # An 8-bit BMP compressed with RLE (compression 1 at byte 30), whose data
    # is shorter than the pixels: TensorFlow's "Input size should match ...".
    data = bytearray(_bmp(Image.fromarray(np.eye(8, dtype="uint8") * 255).quantize(4)))
    data[30] = 1
    path = tmp_path / "rle.bmp"
    path.write_bytes(bytes(data[:-20]))
    assert _describe_failure(str(path), (8, 8), True, False) == (
        "cannot decode image: a run-length compressed BMP, which TensorFlow does not decode: "
        "save it as PNG or as an uncompressed BMP")
    # Served (a SavedModel's batch): refused with their positions; they
    # failed in TensorFlow's decoder ("Number of channels inherent in the
    # image must be 1, 3 or 4, was 0"), naming none.
    serve = tf.function(lambda b: preprocess_image_batch(b, (8, 8)))
    good = _bmp(Image.fromarray(np.zeros((8, 8, 3), "uint8")))
    one_bit = (tmp_path / "one_bit.bmp").read_bytes()
    for batch, words in (([good, one_bit, good, one_bit], r"image_bytes: a BMP of other than 8, "
                          r"24 or 32 bits per pixel, which TensorFlow does not decode "
                          r".*positions of the batch:.*\[1 3\]"),
                         ([path.read_bytes(), good], r"image_bytes: a run-length compressed "
                          r"BMP, .*positions of the batch:.*\[0\]")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            serve(tf.constant(batch))
    assert serve(tf.constant([good, good])).shape == (2, 8, 8, 3)


def _encoded(image, fmt, **kwargs):
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_served_images_declaring_too_many_pixels_are_refused_unread():
    # A 48 KB PNG of 20000 x 20000 pixels: serving one took 2.3 GB (a helper's
    # 379 KiB one; two in a batch 3.9 GB).
    from mmtl_tf.data.image import MAX_SERVED_PIXELS, _declared_pixels, _served_heads

    def declared(encoded):
        encoded = tf.constant(encoded)
        return _declared_pixels(_served_heads(encoded), encoded)

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (23, 37, 3)).astype("uint8"))
    alpha = np.zeros((23, 37, 4), "uint8")
    alpha[..., 3] = np.arange(37)[None] * 6
    images = [_encoded(rgb, "PNG"), _encoded(rgb, "GIF"), _encoded(rgb, "BMP"),
              _encoded(rgb, "JPEG"), _encoded(rgb, "JPEG", progressive=True),
              _encoded(rgb, "WEBP", lossless=False), _encoded(rgb, "WEBP", lossless=True),
              _encoded(Image.fromarray(alpha), "WEBP", lossless=False)]
    assert {data[12:16] for data in images[-3:]} == {b"VP8 ", b"VP8L", b"VP8X"}
    assert declared(images + [b"", b"not an image"]).numpy().tolist() \
        == [23 * 37] * len(images) + [0, 0]
    bomb = _encoded(Image.new("1", (20000, 20000)), "PNG")
    assert len(bomb) < 100_000 and 20000 * 20000 > MAX_SERVED_PIXELS
    serve = tf.function(lambda b: preprocess_image_batch(b, (8, 8)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes: images of more than 178,956,970 pixels by their "
                             r"header .*positions of the batch:.*\[1\]"):
        serve(tf.constant([images[0], bomb]))
    assert serve(tf.constant(images)).shape == (len(images), 8, 8, 3)


def test_an_animated_webp_without_alpha_is_refused_before_it_is_decoded(tmp_path):
    # TensorFlow 2.21's decode_image(channels=0) returns its first frame and
    # then corrupts the heap (the process dies), so this runs in a child.
    import subprocess
    import sys

    frames = [Image.fromarray(np.full((16, 16, 3), v, "uint8")) for v in (0, 128, 255)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, format="WEBP", save_all=True, append_images=frames[1:])
    data = path.read_bytes()
    assert data[12:16] == b"VP8X" and data[20] & 0x12 == 0x02  # animated, no alpha
    still = tmp_path / "still.webp"
    frames[1].save(still, format="WEBP", lossless=True)
    script = f"""
import re
import numpy as np, tensorflow as tf
from mmtl_tf.data.image import decode_image, preprocess_image_batch, preprocess_image_bytes
np.testing.assert_array_equal(decode_image(tf.io.read_file({str(still)!r})).numpy(),
                              np.full((16, 16, 3), 128, "uint8"))
one = tf.function(lambda b: preprocess_image_bytes(b, (8, 8)))
batch = tf.function(lambda b: preprocess_image_batch(b, (8, 8)))  # as exports serve
still, anim = tf.io.read_file({str(still)!r}), tf.io.read_file({str(path)!r})
for _ in range(3):
    for call, arg, text in [(one, anim, "Input is empty"),
                            (batch, tf.stack([still, anim, anim]),
                             "image_bytes: an animated WebP without an alpha channel, which "
                             "TensorFlow cannot decode.*at these positions of the batch:.*1 2")]:
        try:
            call(arg)
        except tf.errors.InvalidArgumentError as e:
            assert re.search(text, str(e), re.S), str(e)
        else:
            raise AssertionError("decoded")
print("survived")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0 and "survived" in done.stdout, done.stderr[-2000:]
    with pytest.raises(mmtl_tf.DataError, match=r"anim.webp: cannot decode image: an "
                                                r"animated WebP without an alpha channel"):
        mmtl_tf.data.image.decoded_image_dataset([str(path), str(still)], (8, 8))


@pytest.mark.parametrize("victim", [2, 5])  # a file among the others, the last one
def test_without_a_cache_a_file_failing_in_a_later_epoch_is_named(tmp_path, victim):
    from mmtl_tf.data.image import decoded_image_dataset

    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((8, 8, 3), 10 * i, "uint8")).save(paths[-1])
    ds, kept = decoded_image_dataset(paths, (8, 8), cache=False)
    assert [int(i) for i, _ in ds] == [0, 1, 2, 3, 4, 5] and int(ds.cardinality()) == 6
    (tmp_path / f"{victim}.png").write_bytes(b"changed since")
    # It was "Input dataset was expected to contain 6 elements but contained only 5".
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"one of the image files failed to load in a later epoch.*"
                             rf"\[{re.escape(paths[victim])}\]"):
        list(ds)



def test_without_a_cache_a_skipped_file_that_loads_later_stays_skipped(tmp_path):
    from mmtl_tf.data.image import decoded_image_dataset

    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((8, 8, 3), 10 * i, "uint8")).save(paths[-1])
    good = open(paths[1], "rb").read()
    open(paths[1], "wb").write(b"being copied")
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 1 bad image file"):
        ds, kept = decoded_image_dataset(paths, (8, 8), cache=False, on_error="skip")
    assert kept == [0, 2, 3]
    open(paths[1], "wb").write(good)  # complete now (a copy that finished)
    # It was "failed to load in a later epoch" naming 2.png, which had loaded.
    assert [(int(i), int(image[0, 0, 0])) for i, image in ds] == [(0, 0), (1, 20), (2, 30)]
