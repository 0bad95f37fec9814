"""In-graph image preprocessing: decode (upright, by a JPEG's Exif orientation),
alpha-composite, resize, crop, augment.

Every function here is made of TensorFlow ops, so it runs inside `Dataset.map`
and inside an exported model's serving function alike. That is what makes an
exported SavedModel, fed raw JPEG/PNG bytes, see exactly the pixels the model
was trained on.
"""

import functools
import os

import tensorflow as tf


def decode_image(image_bytes):
    """Decodes JPEG/PNG/GIF/BMP/WebP bytes into RGB uint8 pixels, upright.

    A JPEG's Exif orientation is applied (`decode_upright`), as image viewers
    do. Grayscale images are repeated to three channels; images with an alpha
    channel (PNG) are composited onto a white background (and rounded), so
    transparent pixels do not come out as whatever colour happens to be stored
    under them (palette PNGs with transparency too; not a GIF's transparent
    pixels, which TensorFlow decodes black, nor a grayscale or RGB PNG's
    single transparent `tRNS` colour, which stays that colour). Opaque RGB
    images pass through untouched; only images with an alpha channel pay for
    the compositing.

    Args:
        image_bytes: scalar `tf.string`. The encoded file content.

    Returns:
        uint8 tensor of shape (height, width, 3).
    """
    return tf.ensure_shape(_to_rgb(decode_upright(image_bytes)), [None, None, 3])


_IMAGE = tf.TensorSpec([None, None, None], tf.uint8)
_BYTES = tf.TensorSpec([], tf.string)


def _noinline(function, signature=(_IMAGE,)):
    """`function` on one uint8 image (h, w, c), as a function that graphs call
    instead of inlining (`signature`: the specs of its arguments, when not
    that image alone).

    Inlined into a `Dataset.map` function, every node of a `tf.cond` /
    `tf.switch_case` branch is visited for every element, taken or not; for
    these branches (compositing, resizing) that cost more than the work done
    on an already-RGB, already-sized image. A call is one node. The function
    is traced once (lazily, outside any graph) and the same concrete function
    is called from every graph, so building datasets does not retrace it.
    """
    traced = tf.function(function, autograph=False, input_signature=list(signature),
                         experimental_attributes={"_noinline": True})
    concrete = []

    @functools.wraps(function)
    def call(*args):
        if not concrete:
            with tf.init_scope():
                concrete.append(traced.get_concrete_function())
        return concrete[0](*args)

    call.traced = traced
    return call


def decode_upright(image_bytes, min_side=None):
    """`tf.io.decode_image` (any channels, no animation), with a JPEG's Exif
    orientation applied: a photo that a phone stored sideways, with the
    Orientation tag saying how to turn it (2–8), comes out as image viewers,
    PIL's `ImageOps.exif_transpose` and annotation tools show it, so boxes
    drawn on it fit. `tf.io.decode_jpeg` ignores the tag (TensorFlow issue
    8430), and so do Keras' image loaders.

    Only a JPEG with Exif data where the Exif standard puts it pays for
    reading the tag (`_head_flags` decides; `_finish_decoding` is
    a function that graphs call rather than inline). A tag that cannot be
    read leaves the image as decoded.

    With `min_side` (an int), a JPEG file of 64 KiB or more whose shorter
    side is at least twice `min_side` is decoded at a half, a quarter or an
    eighth of its size, the smallest that keeps `min_side` pixels on the
    shorter side (`_decode_jpeg_reduced`): libjpeg scales while decoding (in
    the DCT), with less work and memory than decoding it whole, and the
    resize after it is smaller too. Smaller files decode fast whole. The
    rule depends on the bytes alone, so a training pipeline and an exported
    model decode every file the same way.
    """
    exif, animated_webp, bmp_8_bit = _head_flags(image_bytes)
    # TensorFlow 2.21 decodes the first frame of an animated WebP without
    # alpha and then corrupts the heap (the process dies): such bytes are
    # replaced by none, which fail to decode like any damaged file
    # (`_describe_failure` names the reason; an exported model's format
    # check refuses them first).
    # (`tf.cond` forwards the bytes; `tf.where` copied every image's.)
    encoded = tf.cond(animated_webp, lambda: tf.constant(""), lambda: image_bytes)
    if min_side is None:
        image = _decode_whole(encoded)
    else:
        # A small file pays for two ops and a branch (in `Dataset.map`, every
        # op costs); the large file's branch is one call.
        image = tf.cond(tf.strings.length(encoded) >= _REDUCE_FROM_BYTES,
                        lambda: _decode_large(encoded, int(min_side)),
                        lambda: _decode_whole(encoded))
    return tf.cond(exif | bmp_8_bit, lambda: _finish_decoding(image, image_bytes),
                   lambda: image)


def _decode_whole(image_bytes):
    """Any image format's bytes decoded at full size (any channels, the first
    frame of an animation)."""
    return tf.io.decode_image(image_bytes, channels=0, expand_animations=False)


def _starts_as_jpeg(image_bytes):
    """bool tensor: the bytes start as a JPEG's do (the magic number)."""
    return tf.equal(tf.strings.substr(image_bytes, 0, 3), _JPEG_MAGIC)


# JPEG files this long or longer may be decoded at a reduced scale.
_REDUCE_FROM_BYTES = 65536


@functools.partial(_noinline, signature=(_BYTES, tf.TensorSpec([], tf.int32)))
def _decode_large(image_bytes, min_side):
    """A file of `_REDUCE_FROM_BYTES` or more: a JPEG decoded at a reduced
    scale (`_decode_jpeg_reduced`), another format whole."""
    return tf.cond(_starts_as_jpeg(image_bytes),
                   lambda: _decode_jpeg_reduced(image_bytes, min_side),
                   lambda: _decode_whole(image_bytes))


def _decode_jpeg_reduced(image_bytes, min_side):
    """JPEG bytes decoded (any channels) at 1/1, 1/2, 1/4 or 1/8 of their
    size, the smallest that keeps `min_side` pixels on the shorter side. A
    JPEG whose header cannot be read fails on it."""
    shape = tf.io.extract_jpeg_shape(image_bytes)
    halvings = tf.reduce_sum(tf.cast(
        tf.reduce_min(shape[:2]) >= [2 * min_side, 4 * min_side, 8 * min_side], tf.int32))
    return tf.switch_case(halvings, [
        functools.partial(tf.io.decode_jpeg, image_bytes, channels=0, ratio=ratio)
        for ratio in (1, 2, 4, 8)])


_EXIF_HEADER = b"Exif\x00\x00"
_EXIF_ENTRIES = 64  # IFD0 entries read (Orientation, tag 0x0112, is among the first)


# Where an Exif APP1 segment (FF E1, its length, "Exif\0\0", then the TIFF
# header) starts in a JPEG (FF D8 ...): right after the start of the image
# (cameras, phones), or after a JFIF APP0 segment of the usual 16 bytes
# (image libraries, editors). (position, bytes) to find, for each place.
_EXIF_PLACES = tuple(((0, b"\xff\xd8"), (app1, b"\xff\xe1"), (app1 + 4, _EXIF_HEADER))
                     for app1 in (2, 20))
# Where each place has its "Exif\0\0" (the TIFF header follows it).
_EXIF_AT = tuple(at for _, _, (at, _) in _EXIF_PLACES)


def _head_pattern(*parts):
    """(mask, bytes) over the first `_HEAD_LENGTH` bytes of a file that
    match `parts`, each (offset, bytes) or (offset, bytes, bit mask)."""
    mask, want = [0] * _HEAD_LENGTH, [0] * _HEAD_LENGTH
    for at, data, *bits in parts:
        for i, byte in enumerate(data):
            mask[at + i] = bits[0][i] if bits else 0xFF
            want[at + i] = byte & mask[at + i]
    return mask, want


_HEAD_LENGTH = 30
# `_head_flags`' tests, in its order: "Exif\0\0" where `_EXIF_AT` has it
# (either place); an animated WebP without alpha (the VP8X chunk's flags
# with the animation bit, 0x02, and not the alpha bit, 0x10); an 8-bit BMP
# (bits per pixel at byte 28).
_ANIMATED_WEBP = _head_pattern((0, b"RIFF"), (8, b"WEBPVP8X"), (20, b"\x02", b"\x12"))
_HEAD_PATTERNS = ([_head_pattern((at, _EXIF_HEADER)) for at in _EXIF_AT]
                  + [_ANIMATED_WEBP, _head_pattern((0, b"BM"), (28, b"\x08\x00"))])


def _head_flags(image_bytes):
    """Three bool tensors from the first 30 bytes of an encoded image, read
    once (zeros past the end of shorter bytes): whether it may hold Exif
    data (`_exif_marked`), whether it is an animated WebP without alpha,
    whether it is an 8-bit BMP. Every image pays for these few ops."""
    exif_here, exif_there, animated_webp, bmp_8_bit = tf.unstack(
        _head_matches(_heads(image_bytes), _HEAD_PATTERNS))
    return exif_here | exif_there, animated_webp, bmp_8_bit


def _heads(image_bytes):
    """uint8 (..., 30): the first bytes of each encoded image, zeros past
    the end of shorter ones."""
    return tf.io.decode_raw(tf.strings.substr(image_bytes, 0, _HEAD_LENGTH), tf.uint8,
                            fixed_length=_HEAD_LENGTH)


def _head_matches(head, patterns):
    """bool (..., len(patterns)): which `_head_pattern`s the heads (...,
    1, 30) match (a single head may be (30,))."""
    masks, wants = zip(*patterns)
    return tf.reduce_all(tf.equal(tf.bitwise.bitwise_and(head, masks), wants), axis=-1)


def _exif_marked(image_bytes):
    """bool tensor: `Exif\\0\\0` is where `_EXIF_PLACES` would have it (a
    cheaper test than `exif_orientation`'s, true for those and a few more;
    an error for bytes shorter than 24, which no image is). Every image pays
    for it: in `Dataset.map`, about 5 µs, where searching the first 64 KiB
    (`tf.strings.split`) cost about 40 µs, a sixth of decoding one of the
    benchmark's JPEGs."""
    return tf.reduce_any(tf.equal(
        tf.strings.substr(image_bytes, list(_EXIF_AT), [len(_EXIF_HEADER)] * len(_EXIF_AT)),
        _EXIF_HEADER))


def exif_orientation(image_bytes):
    """int32 tensor, 1–8: the Exif Orientation tag of JPEG bytes (1, "as
    stored", when there is none or it cannot be read).

    Reads the first bytes once: which of `_EXIF_PLACES` holds the Exif APP1
    segment (a JFIF APP0 segment of another length, e.g. with a JFIF
    thumbnail, is not looked past), its TIFF header (either byte order) and
    the first 64 entries of its first IFD, with TensorFlow ops only, so it
    runs in `Dataset.map` and in exported models. (Few ops, each reading
    many bytes at once: every op makes each `tf.data` iterator over a
    decoding graph slower to set up.)
    """
    # The segment starts within the first 30 bytes and is at most 64 KiB
    # long; zeros after the bytes, so that every read below is in range.
    head = tf.strings.substr(image_bytes, 0, max(_EXIF_AT) + len(_EXIF_HEADER) + 65536)
    pad = 16 + 12 * _EXIF_ENTRIES
    data = tf.cast(tf.io.decode_raw(tf.strings.join([head, b"\x00" * pad]), tf.uint8),
                   tf.int32)
    places = tf.reduce_all(tf.equal(
        tf.gather(data, [[at + i for at, b in place for i in range(len(b))]
                         for place in _EXIF_PLACES]),
        [[byte for _, b in place for byte in b] for place in _EXIF_PLACES]), axis=1)
    tiff = tf.gather([at + len(_EXIF_HEADER) for at in _EXIF_AT],
                     tf.argmax(tf.cast(places, tf.int32)))
    # The bytes of the segment (at most 64 KiB after its TIFF header).
    size = tf.minimum(tf.strings.length(head), tiff + 65536)

    def number(at, width):
        """The unsigned `width`-byte numbers at the positions `at`, in the
        TIFF header's byte order (int32: a 4-byte one of 2**31 or more comes
        out negative, which points outside the bytes read as well)."""
        weights = [256 ** i for i in range(width)]
        digits = tf.gather(data, tf.clip_by_value(
            tf.expand_dims(at, -1) + tf.range(width), 0, size + pad - 1))
        return tf.reduce_sum(digits * tf.where(big_endian, weights[::-1], weights), -1)

    header = tf.gather(data, tiff + tf.range(2))  # "MM" or "II"
    order = tf.gather(header, 0)
    big_endian = tf.equal(order, 0x4D)  # "MM" (else "II")
    # The first IFD's offset from the TIFF header: at least past the header
    # (8 bytes; one of 2**31 or more comes out negative here).
    offset = number(tiff + 4, 4)
    ifd = tiff + tf.clip_by_value(offset, 8, 65536)
    k = tf.range(_EXIF_ENTRIES)
    entry = ifd + 2 + 12 * k
    # Per entry: tag, type and (for a SHORT) its value, in the first 2 bytes.
    tag, kind, value = tf.unstack(number(tf.stack([entry, entry + 2, entry + 8], -1), 2),
                                  axis=-1)
    match = tf.reduce_all(tf.stack([
        k < number(ifd, 2), entry + 12 <= size, tf.equal(tag, 0x0112), tf.equal(kind, 3)]), 0)
    found = tf.gather(value, tf.argmax(tf.cast(match, tf.int32)))
    valid = tf.reduce_all(tf.stack([
        tf.reduce_any(places), tf.equal(offset, tf.clip_by_value(offset, 8, 65536)),
        tf.reduce_all(tf.equal(header, order)), tf.reduce_any(tf.equal(order, [0x49, 0x4D])),
        tf.reduce_any(match), found >= 1, found <= 8]))
    return tf.where(valid, found, 1)


# For Exif orientations 1–8: whether the image is transposed (5–8), then
# whether its rows and its columns are reversed. 1: as stored; 2: mirrored
# left-right; 3: turned 180°; 4: mirrored top-bottom; 5: transposed; 6:
# turned 90° clockwise; 7: transversed; 8: turned 90° counter-clockwise.
_ORIENTATIONS = ((False, False, False), (False, False, True), (False, True, True),
                 (False, True, False), (True, False, False), (True, False, True),
                 (True, True, True), (True, True, False))


def _oriented(image, orientation):
    """`image` (h, w, c) as Exif `orientation` (1–8) says to show it. Without
    branches (a transpose and a reverse whose axes are tensors): a
    `tf.switch_case` over the eight made every `tf.data` iterator over the
    decoding graph slower to make."""
    how = tf.gather(tf.constant(_ORIENTATIONS), orientation - 1)
    image = tf.transpose(image, tf.where(how[0], [1, 0, 2], [0, 1, 2]))
    return tf.reverse(image, tf.cast(tf.where(tf.concat([how[1:], [False]], 0))[:, 0],
                                     tf.int32))


@functools.partial(_noinline, signature=(_IMAGE, _BYTES))
def _finish_decoding(image, image_bytes):
    """A decoded image whose bytes `_head_flags` marked: a JPEG turned by its
    Exif orientation; an 8-bit BMP in its palette's colours (Paint's "256
    colour bitmap": TensorFlow returns the palette indices as gray values;
    a grayscale BMP's palette gives the same gray)."""
    def palette_colours():
        # After the 14-byte file header and the info header (its size at
        # byte 14): 4 bytes (blue, green, red, 0) per colour.
        head = tf.cast(tf.io.decode_raw(tf.strings.substr(image_bytes, 14, 4), tf.uint8,
                                        fixed_length=4), tf.int64)
        size = 14 + tf.reduce_sum(head * tf.constant([1, 256, 65536, 16777216], tf.int64))
        start = tf.cast(tf.minimum(size, tf.cast(tf.strings.length(image_bytes), tf.int64)),
                        tf.int32)
        table = tf.io.decode_raw(tf.strings.substr(image_bytes, start, 1024), tf.uint8,
                                 fixed_length=1024)
        return tf.gather(tf.reshape(table, [256, 4])[:, 2::-1],
                         tf.cast(image[..., 0], tf.int32))

    is_bmp = tf.equal(tf.strings.substr(image_bytes, 0, 2), b"BM")
    image = tf.cond(is_bmp & tf.equal(tf.shape(image)[-1], 1), palette_colours, lambda: image)
    return _oriented(image, exif_orientation(image_bytes))


def _to_rgb(image):
    """uint8 (h, w, 1|2|3|4) → uint8 (h, w, 3); alpha composited onto white."""
    is_rgb = tf.equal(tf.shape(image)[-1], 3)
    return tf.cond(is_rgb, lambda: image, lambda: _other_to_rgb(image))


@_noinline
def _other_to_rgb(image):
    def gray():
        return tf.tile(image[..., :1], [1, 1, 3])

    def gray_alpha():
        return _composite(tf.tile(image[..., :1], [1, 1, 3]), image[..., 1:2])

    def rgb():
        return image[..., :3]

    def rgba():
        return _composite(image[..., :3], image[..., 3:4])

    return tf.switch_case(tf.shape(image)[-1] - 1, [gray, gray_alpha, rgb, rgba])


def _composite(color, alpha):
    a = tf.cast(alpha, tf.float32) / 255.0
    out = tf.cast(color, tf.float32) * a + 255.0 * (1.0 - a)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def resize_and_crop(image, image_size, crop=True):
    """Resizes an image and optionally center-crops it to `image_size`.

    With `crop`, the largest centred region with the target's aspect ratio is
    cut out first and then resized, so the aspect ratio is kept. Resizing is
    bilinear; when an image shrinks by more than 2× it is also antialiased
    (slower, but without it large photos alias badly). A uint8 image that
    already has the target size is returned as it is.

    Args:
        image: uint8 or float tensor (height, width, channels), values in
            [0, 255].
        image_size: (height, width). Target size.
        crop: bool. Keep the aspect ratio by cutting the centre (True) or
            stretch to the target (False).

    Returns:
        uint8 tensor (height, width, channels), rounded.
    """
    target_h, target_w = int(image_size[0]), int(image_size[1])
    if crop:
        image = _center_crop(image, image_size)
    if image.dtype == tf.uint8:
        shape = tf.shape(image)
        same = tf.logical_and(tf.equal(shape[0], target_h), tf.equal(shape[1], target_w))
        resize = _uint8_resizer((target_h, target_w))
        image = tf.cond(same, lambda: image, lambda: resize(image))
    else:
        image = _resize_rounded(image, (target_h, target_w))
    return tf.ensure_shape(image, [target_h, target_w, None])


def _resize_rounded(image, image_size):
    """Bilinear resize (antialiased when shrinking by more than 2×), rounded to uint8."""
    shape = tf.shape(image)
    shrink = tf.minimum(image_size[0] / tf.cast(shape[0], tf.float64),
                        image_size[1] / tf.cast(shape[1], tf.float64))

    def resized(antialias):
        def fn():
            out = tf.image.resize(image, image_size, antialias=antialias)
            return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
        return fn

    return tf.cond(shrink < 0.5, resized(True), resized(False))


@functools.lru_cache(maxsize=None)
def _uint8_resizer(image_size):
    return _noinline(lambda image: _resize_rounded(image, image_size))


def check_image_size(image_size):
    """`(height, width)` as two positive ints; a `ValueError` for anything else
    (before it could surface as a decoding failure of every file)."""
    try:
        height, width = image_size
        size = (int(height), int(width))
        ok = size == (height, width) and min(size) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"image_size={image_size!r}: expected (height, width), two "
                         "positive integers.")
    return size


def preprocess_image_bytes(image_bytes, image_size, crop=True, grayscale=False):
    """Bytes of one encoded image → uint8 (height, width, 3 or 1) pixels.

    The same function serves training pipelines and exported models. The crop
    is cut from the decoded uint8 pixels before anything is converted.

    The image is decoded upright (`decode_upright`: a JPEG's Exif
    orientation applied). An opaque RGB image that then has the target size
    comes out as decoded (the conversion below would return it unchanged
    anyway); only other images run the conversion (crop, RGB/alpha,
    resize). The conversion
    is a separate, non-inlined function: inlined, its many branch nodes would
    be walked for every image, even where the branch is not taken, which cost
    about 70% on top of decoding in `Dataset.map` on already-sized JPEGs
    (`bench/bench_input_pipeline.py`).

    Args:
        image_bytes: scalar `tf.string`. The encoded file content.
        image_size: (height, width).
        crop: bool. Center crop after an aspect-preserving resize.
        grayscale: bool. Return one luminance channel.
    """
    size = check_image_size(image_size)
    # Decoded at a reduced scale where that keeps at least the target's
    # larger side on the image's shorter side (enough for any crop and any
    # Exif turn).
    image = decode_upright(image_bytes, min_side=max(size))
    convert = _converter(size, bool(crop), bool(grayscale))
    if grayscale:
        return tf.ensure_shape(convert(image), [size[0], size[1], 1])
    ready = tf.reduce_all(tf.equal(tf.shape(image), [size[0], size[1], 3]))
    image = tf.cond(ready, lambda: image, lambda: convert(image))
    return tf.ensure_shape(image, [size[0], size[1], 3])


@functools.lru_cache(maxsize=None)
def _converter(image_size, crop, grayscale):
    """decoded uint8 (h, w, 1-4) → uint8 `image_size` pixels, as a function
    that graphs call instead of inlining (`_noinline`)."""

    @_noinline
    def convert(image):
        if crop:
            image = _center_crop(image, image_size)
        image = _to_rgb(image)
        if grayscale:
            image = tf.image.rgb_to_grayscale(image)
        return resize_and_crop(image, image_size, crop=False)

    return convert


def _center_crop(image, image_size):
    """The largest centred window of `image` with the aspect ratio of `image_size`."""
    target_h, target_w = int(image_size[0]), int(image_size[1])
    shape = tf.shape(image)[:2]
    height, width = shape[0], shape[1]
    crop_h = tf.maximum(1, tf.minimum(height, tf.cast(tf.round(
        tf.cast(width, tf.float32) * target_h / target_w), tf.int32)))
    crop_w = tf.maximum(1, tf.minimum(width, tf.cast(tf.round(
        tf.cast(height, tf.float32) * target_w / target_h), tf.int32)))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image[top:top + crop_h, left:left + crop_w]


def preprocess_image_batch(image_bytes, image_size, crop=True, grayscale=False,
                           name="image_bytes"):
    """A batch (N,) of encoded images → uint8 (N, height, width, C).

    Items that are not image files by their first bytes fail before anything
    is decoded, with an error that gives their positions in the batch (the
    decoder's own error names none): base64 text (a client that did not
    decode it, or sent it to TensorFlow Serving's REST API without the
    `{"b64": ...}` wrapper that decodes it) says so; other bytes (empty, an
    HTML error page, a TIFF) are "not JPEG, PNG, GIF, BMP or WebP"; an
    animated WebP without alpha, which TensorFlow's decoder cannot read, is
    named as such. `name` is the input's name in the messages.
    """
    channels = 1 if grayscale else 3

    def one(encoded):
        return preprocess_image_bytes(encoded, image_size, crop, grayscale)

    with tf.control_dependencies(_image_format_checks(image_bytes, name)):
        image_bytes = tf.identity(image_bytes)
    return tf.map_fn(
        one, image_bytes,
        fn_output_signature=tf.TensorSpec(
            (int(image_size[0]), int(image_size[1]), channels), tf.uint8))


# The first bytes of what `tf.io.decode_image` decodes: (offset, bytes), all
# to match. JPEG XL (a bare codestream or the container) is there because
# this TensorFlow's decoder names it.
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_IMAGE_MAGIC = (((0, b"\xff\xd8\xff"),), ((0, _PNG_MAGIC),), ((0, b"GIF8"),),
                ((0, b"BM"),), ((0, b"RIFF"), (8, b"WEBP")), ((0, b"\xff\x0a"),),
                ((0, b"\x00\x00\x00\x0cJXL \r\n\x87\n"),))
# How those files start once base64-encoded (standard and URL-safe
# alphabets), and a data URL.
_BASE64_STARTS = ("/9j/", "_9j_", "iVBORw0KGgo", "R0lGOD", "UklGR", "data:image/")


def _image_format_checks(image_bytes, name):
    """Assertion ops that fail naming the positions of the items of the
    (N,) string tensor `image_bytes` that are base64 text, then of those
    that start as no image format `tf.io.decode_image` reads."""
    head = tf.strings.join([tf.strings.substr(image_bytes, 0, 12), "\0" * 12])

    def starts(offset, magic):
        return tf.equal(tf.strings.substr(head, offset, len(magic)), magic)

    known = tf.reduce_any(tf.stack([
        tf.reduce_all(tf.stack([starts(o, m) for o, m in parts]), axis=0)
        for parts in _IMAGE_MAGIC]), axis=0)
    base64 = tf.reduce_any(tf.stack([starts(0, text.encode()) for text in _BASE64_STARTS]),
                           axis=0)
    first = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(base64)),
        [f"{name}: base64 text, not image bytes, at these positions of the batch (decode "
         "it before sending; TensorFlow Serving's REST API decodes values written as "
         '{"b64": "..."}):', tf.where(base64)[:, 0]], summarize=20)
    # The first bytes of each image, read once for the tests below: the
    # decoding's own animated-WebP test (`_head_flags`), BMP headers and
    # declared sizes.
    head = _served_heads(image_bytes)
    animated = _head_matches(head[:, None, :_HEAD_LENGTH], [_ANIMATED_WEBP])[:, 0]
    with tf.control_dependencies([first]):
        second = tf.debugging.Assert(
            tf.reduce_all(known),
            [f"{name}: not JPEG, PNG, GIF, BMP or WebP bytes at these positions of the "
             "batch (by their first bytes):", tf.where(tf.logical_not(known))[:, 0]],
            summarize=20)
    odd_bits, rle = _undecodable_bmps(head)
    with tf.control_dependencies([second]):
        # A 379 KiB PNG of 20000 x 20000 pixels took 2.3 GB to serve (two in
        # a batch 3.9 GB): a request of a few such files could get a server
        # killed. (After the format checks: a damaged JPEG header fails here.)
        huge = _declared_pixels(head, image_bytes) > MAX_SERVED_PIXELS
        second = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(huge)),
            [f"{name}: images of more than {MAX_SERVED_PIXELS:,} pixels by their header "
             "(the decompression-bomb limit of PIL; decoding one takes gigabytes), at these "
             "positions of the batch:", tf.where(huge)[:, 0]], summarize=20)
    with tf.control_dependencies([second]):
        checks = [tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(animated)),
            [f"{name}: {_ANIMATED_WEBP_PROBLEM}; at these positions of the batch:",
             tf.where(animated)[:, 0]], summarize=20)]
    # (Served, they failed in TensorFlow's decoder: "Number of channels
    # inherent in the image must be 1, 3 or 4, was 0".)
    for rows, problem in ((odd_bits, _BMP_BITS_PROBLEM.format(
            bits="BMP of other than 8, 24 or 32 bits per pixel")), (rle, _BMP_RLE_PROBLEM)):
        with tf.control_dependencies(checks[-1:]):
            checks.append(tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(rows)),
                [f"{name}: {problem}; at these positions of the batch:",
                 tf.where(rows)[:, 0]], summarize=20))
    return checks


# The most pixels a served image may declare (`preprocess_image_batch`):
# PIL's limit for a decompression bomb (`Image.MAX_IMAGE_PIXELS` x 2).
MAX_SERVED_PIXELS = 178_956_970
# How many first bytes of each served image `_image_format_checks` reads:
# through the BMP's compression field.
_SERVED_HEAD = 34


def _served_heads(image_bytes):
    """int64 (N, `_SERVED_HEAD`): the first bytes of each of the (N,)
    encoded images, zeros past the end of shorter ones."""
    return tf.cast(tf.io.decode_raw(tf.strings.substr(image_bytes, 0, _SERVED_HEAD), tf.uint8,
                                    fixed_length=_SERVED_HEAD), tf.int64)


def _head_number(head, at, size, big_endian=False):
    """int64 (N,): the unsigned `size`-byte numbers at byte `at` of the heads
    (int64 (N, bytes), one byte a value)."""
    order = range(size) if big_endian else reversed(range(size))
    value = tf.zeros_like(head[:, 0])
    for i in order:
        value = value * 256 + head[:, at + i]
    return value


def _head_starts(head, at, magic):
    """bool (N,): which heads hold the bytes `magic` at byte `at`."""
    return tf.reduce_all(tf.stack([head[:, at + i] == byte
                                   for i, byte in enumerate(magic)]), axis=0)


def _bmp_info_header(head):
    """bool (N,): which heads are a BMP's with a BITMAPINFOHEADER or later
    (40 bytes or more; OS/2's 12-byte header holds other fields)."""
    return _head_starts(head, 0, b"BM") & (_head_number(head, 14, 4) >= 40)


def _declared_pixels(head, image_bytes):
    """int64 (N,): width x height of each of the (N,) encoded images as its
    header declares them (PNG, GIF, BMP, WebP from their first bytes, `head`
    as in `_image_format_checks`; JPEG from its frame header, read by
    `tf.io.extract_jpeg_shape`); 0 for other bytes."""
    def number(at, size, big_endian=False):
        return _head_number(head, at, size, big_endian)

    def starts(at, magic):
        return _head_starts(head, at, magic)

    def side(value):  # (a 32-bit side is at most 2**32: the product fits in int64)
        return tf.minimum(value, 2 ** 31)

    png = side(number(16, 4, True)) * side(number(20, 4, True))
    gif = number(6, 2) * number(8, 2)
    height = number(22, 4)
    bmp = side(number(18, 4)) * side(
        tf.where(height >= 2 ** 31, 2 ** 32 - height, height))  # top-down: negative
    vp8x = (number(24, 3) + 1) * (number(27, 3) + 1)
    vp8 = tf.bitwise.bitwise_and(number(26, 2), 0x3FFF) * tf.bitwise.bitwise_and(
        number(28, 2), 0x3FFF)
    bits = number(21, 4)  # VP8L: 14 bits of width - 1, then of height - 1
    vp8l = (tf.bitwise.bitwise_and(bits, 0x3FFF) + 1) * (
        tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), 0x3FFF) + 1)
    webp = starts(0, b"RIFF") & starts(8, b"WEBPVP8")
    jpeg = starts(0, b"\xff\xd8\xff")

    def jpeg_pixels(encoded):
        shape = tf.cond(tf.strings.substr(encoded, 0, 3) == b"\xff\xd8\xff",
                        lambda: tf.io.extract_jpeg_shape(encoded, tf.int64),
                        lambda: tf.zeros([3], tf.int64))
        return shape[0] * shape[1]

    jpegs = tf.cond(tf.reduce_any(jpeg), lambda: tf.map_fn(
        jpeg_pixels, image_bytes, fn_output_signature=tf.int64),
        lambda: tf.zeros_like(head[:, 0]))
    return tf.where(starts(0, _PNG_MAGIC), png,
           tf.where(starts(0, b"GIF8"), gif,
           # (Only with a BITMAPINFOHEADER or later: OS/2's 12-byte header
           # holds 16-bit sizes elsewhere; TensorFlow decodes neither kind.)
           tf.where(_bmp_info_header(head), bmp,
           tf.where(webp & starts(15, b"X"), vp8x,
           tf.where(webp & starts(15, b" "), vp8,
           tf.where(webp & starts(15, b"L"), vp8l,
           tf.where(jpeg, jpegs, tf.zeros_like(png))))))))


def _undecodable_bmps(head):
    """bool (N,) twice: which of the heads (`_image_format_checks`) are of
    BMPs that TensorFlow does not decode, by `_BMP_BITS` and `_BMP_RLE` of
    their BITMAPINFOHEADER: of other than 8, 24 or 32 bits per pixel;
    compressed with RLE."""
    bmp = _bmp_info_header(head)
    bits = _head_number(head, 28, 2)
    odd_bits = bmp & tf.reduce_all(bits[:, None] != list(_BMP_BITS), axis=1)
    rle = bmp & tf.logical_not(odd_bits) & tf.reduce_any(
        head[:, 30][:, None] == list(_BMP_RLE), axis=1)
    return odd_bits, rle


def augment_image(image, seed, max_zoom=0.1, max_delta=0.1):
    """Random flip, zoom-crop and brightness/contrast jitter of a uint8 image.

    Stateless: the same `seed` gives the same augmentation, so `deterministic`
    pipelines repeat exactly.

    Args:
        image: uint8 tensor (height, width, channels), one image (map this
            over a batch's images); its size may be unknown until run time
            (e.g. straight from `decode_image`).
        seed: int64 tensor of shape (2,).
        max_zoom: float. Up to this fraction of each side is cut off before the
            crop is resized back.
        max_delta: float. Brightness shift (fraction of 255) and contrast range.

    Raises:
        ValueError: `image` is not of rank 3.
    """
    image = tf.convert_to_tensor(image)
    rank = image.shape.rank
    if rank is not None and rank != 3:
        raise ValueError(
            f"augment_image takes one image of shape (height, width, channels); got shape "
            f"{tuple(image.shape)}" + (": augment before batching, or map it over the "
                                       "batch's images" if rank == 4 else "") + ".")
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    size = tf.shape(image)
    height, width = size[0], size[1]
    x = tf.cast(image, tf.float32)
    x = tf.image.stateless_random_flip_left_right(x, seeds[0])
    if max_zoom:
        frac = tf.random.stateless_uniform([], seeds[1], 1.0 - max_zoom, 1.0)
        crop_h = tf.cast(tf.round(frac * tf.cast(height, tf.float32)), tf.int32)
        crop_w = tf.cast(tf.round(frac * tf.cast(width, tf.float32)), tf.int32)
        x = tf.image.stateless_random_crop(
            x, tf.stack([crop_h, crop_w, tf.shape(x)[-1]]), seeds[2])
        x = tf.image.resize(x, (height, width), method="bilinear")
    if max_delta:
        x = tf.image.stateless_random_brightness(x, max_delta * 255.0, seeds[3])
        x = tf.image.stateless_random_contrast(
            x, 1.0 - max_delta, 1.0 + max_delta, seeds[3][::-1])
    x = tf.clip_by_value(tf.round(x), 0.0, 255.0)
    return tf.cast(tf.ensure_shape(x, image.shape), tf.uint8)


def _load_and_preprocess(path, image_size, crop, grayscale):
    return preprocess_image_bytes(tf.io.read_file(path), image_size, crop, grayscale)


def _load_ready_jpeg(path, image_size):
    """`_load_and_preprocess` for a JPEG that already has `image_size` and
    three channels, without Exif (the same decoding, the same pixels); fails
    for any other file without decoding it (`decoded_image_dataset`'s quick
    load).

    The JPEG header gives the size and channels without decoding; the
    conversion function is not part of this graph, so a `tf.data` iterator
    over it is made without instantiating the conversion's graph (about
    50 ms for each iterator on 2 cores, even where no image needs it).
    """
    image_bytes = tf.io.read_file(path)
    # Any other file: empty bytes, which fail to decode (stateless, unlike
    # an Assert, and silent). Whatever decodes to (height, width, 3) here is
    # what `_load_and_preprocess` returns unchanged.
    image_bytes = tf.where(_is_ready_header(image_bytes, image_size), image_bytes, "")
    return tf.ensure_shape(_decode_whole(image_bytes), [image_size[0], image_size[1], 3])


def _is_ready_header(image_bytes, image_size):
    """bool tensor: the encoded `image_bytes` are a JPEG of `image_size`
    with three channels and no Exif (whose orientation may turn it), by its
    header (in a graph or eagerly; fails for a JPEG whose header is
    damaged)."""
    # The header of another format would make libjpeg print an error: a
    # one-pixel JPEG's is read instead.
    is_jpeg = _starts_as_jpeg(image_bytes)
    jpeg = tf.where(is_jpeg, image_bytes, _one_pixel_jpeg())
    shape = tf.io.extract_jpeg_shape(jpeg)
    # No Exif (`_exif_marked`), tested once the header has been read: bytes
    # too short for the test have failed by then (a position past the end
    # is an error whose message, holding the bytes, Python cannot decode).
    with tf.control_dependencies([shape]):
        exif = _exif_marked(jpeg)
    return tf.reduce_all(tf.stack([
        is_jpeg, tf.reduce_all(tf.equal(shape, [image_size[0], image_size[1], 3])),
        tf.logical_not(exif)]))


_JPEG_MAGIC = b"\xff\xd8\xff"


@functools.lru_cache(maxsize=None)
def _one_pixel_jpeg():
    """The bytes of a 1×1 RGB JPEG (made once, eagerly)."""
    with tf.init_scope():
        return tf.io.encode_jpeg(tf.zeros([1, 1, 3], tf.uint8)).numpy()


# How many files' headers decide whether the checking pass tries the quick
# load: the first, the last and others evenly spaced between.
_READY_SAMPLE = 8


def _looks_ready(paths, image_size):
    """True when every sampled file of `paths` is a JPEG of `image_size`
    (RGB), without Exif: read from its first bytes in Python, a few µs a
    file (TensorFlow's test run eagerly took about 4 ms a file, 30 ms of a
    1,621-image build)."""
    n = len(paths)
    if not n:
        return False
    last = max(min(_READY_SAMPLE, n) - 1, 1)
    picks = sorted({round(k * (n - 1) / last) for k in range(min(_READY_SAMPLE, n))})
    return all(_is_ready_jpeg(str(paths[i]), image_size) for i in picks)


def _is_ready_jpeg(path, image_size):
    """True when the file at `path` is a JPEG of `image_size` with three
    channels and no Exif mark (`_is_ready_header`'s test, on the header
    read in Python: `_jpeg_header_shape`); False for anything unreadable.
    It only decides whether the quick load is tried, which tests each file
    again in the graph."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:  # as `tf.io.read_file` reads it
            head = f.read(_HEADER_BYTES)
    except (OSError, tf.errors.OpError):
        return False
    exif = any(head[at:at + len(_EXIF_HEADER)] == _EXIF_HEADER for at in _EXIF_AT)
    return (head.startswith(_JPEG_MAGIC) and not exif
            and _jpeg_header_shape(head) == (image_size[0], image_size[1], 3))


# How much of a file `_is_ready_jpeg` reads: its JPEG header (before the
# frame header only the Exif, ICC and other segments, each under 64 KiB).
_HEADER_BYTES = 1 << 17
# JPEG start-of-frame markers (baseline, progressive, ...; not C4 DHT, C8,
# CC DAC), whose segment holds the image's height, width and components.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_header_shape(data):
    """(height, width, components) from the frame header of JPEG bytes, as
    `tf.io.extract_jpeg_shape` reads them, or None where the segments
    before it cannot be walked."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
        elif marker in (0xD8, 0xD9, 0xDA):  # a new image, its end, scan data
            return None
        elif marker in _SOF_MARKERS:
            if at + 10 > len(data):
                return None
            return (int.from_bytes(data[at + 5:at + 7], "big"),
                    int.from_bytes(data[at + 7:at + 9], "big"), data[at + 9])
        else:
            at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


# Image formats that `tf.io.decode_image` cannot decode, found in photo
# folders (iPhone HEIC, TIFF scans, camera raw, ...): named as such.
UNDECODABLE_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif", ".tif", ".tiff", ".jxl", ".jp2",
                                ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2",
                                ".psd", ".svg")


def _describe_failure(path, image_size, crop, grayscale):
    """Runs the preprocessing eagerly on one file and returns why it fails."""
    from mmtl_tf.data.sources import missing_file_problem
    from mmtl_tf.errors import describe_op_error

    if not os.path.exists(path):
        return missing_file_problem(path)
    if os.path.isdir(path):
        return "a folder, not an image file"
    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        _load_and_preprocess(tf.constant(path), image_size, crop, grayscale)
    except (tf.errors.OpError, ValueError) as e:
        variant = _undecodable_variant(path)
        if variant:
            return f"cannot decode image: {variant}"
        ext = os.path.splitext(path)[1].lower()
        if ext in UNDECODABLE_IMAGE_EXTENSIONS:
            return (f"cannot decode image: TensorFlow does not decode {ext[1:].upper()} "
                    "images (JPEG, PNG, GIF, BMP and WebP); convert it to JPEG or PNG")
        return (f"cannot decode image ({describe_op_error(e)})"
                f"{_first_and_last_bytes_note(path)}")
    return "failed while decoding (unknown reason)"


# Kinds of files of formats TensorFlow reads that its decoders do not.
_ANIMATED_WEBP_PROBLEM = (
    "an animated WebP without an alpha channel, which TensorFlow cannot decode (its "
    "decoder corrupts the memory of the process, so it is refused unread): save it as a "
    "still image, or with an alpha channel")


def _undecodable_variant(path):
    """What makes a file of a format TensorFlow decodes undecodable by it,
    from its first bytes: an animated WebP without alpha (`_head_flags`), a
    BMP of other than 8, 24 or 32 bits per pixel (TensorFlow says "channels
    ... must be 1, 3 or 4, was 0") or compressed with RLE; else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(34) + bytes(34)  # through the BMP's compression field
    except OSError:
        return None
    mask, want = _ANIMATED_WEBP  # the decoding's own test (`_head_flags`)
    if all(byte & m == w for byte, m, w in zip(head, mask, want)):
        return _ANIMATED_WEBP_PROBLEM
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") >= 40:
        bits, compression = int.from_bytes(head[28:30], "little"), head[30]
        if bits not in _BMP_BITS:
            return _BMP_BITS_PROBLEM.format(bits=f"{bits}-bit BMP")
        if compression in _BMP_RLE:
            return _BMP_RLE_PROBLEM
    return None


# The BMPs TensorFlow decodes (bits per pixel), and the RLE compressions
# (the compression field at byte 30) it does not.
_BMP_BITS = (8, 24, 32)
_BMP_RLE = (1, 2)
_BMP_BITS_PROBLEM = ("a {bits}, which TensorFlow does not decode (it decodes 8-, 24- and "
                     "32-bit ones): save it as PNG or as a 24-bit BMP")
_BMP_RLE_PROBLEM = ("a run-length compressed BMP, which TensorFlow does not decode: save it "
                    "as PNG or as an uncompressed BMP")


def _first_and_last_bytes_note(path):
    """What the first and last bytes of a file that failed to decode tell:
    `_cut_short_note`, else `_not_an_image_note`; "" for a file gone or
    unreadable since. The file is read once, 64 bytes of its head and 16
    of its tail."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 16))
            tail = f.read()
    except OSError:
        return ""
    return _cut_short_note(head, tail) or _not_an_image_note(head)


def _not_an_image_note(head):
    """"; the file holds text, not an image: it starts with "<!DOCTYPE
    html..."" (a web page or an error message saved under an image's name,
    as a failed download leaves it), or "; its first bytes (4A 55 4E 4B) are
    no image format's", for a file whose first bytes `head` start as no
    format `tf.io.decode_image` reads (`_IMAGE_MAGIC`); else ""."""
    padded = head + b"\0" * 12
    if any(all(padded[o:o + len(m)] == m for o, m in parts) for parts in _IMAGE_MAGIC):
        return ""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        # "its first bytes (52 49 46 46) are no image format's": RIFF is
        # also WebP's container.
        return "; the file is WAV audio, not an image"
    other = ("HEIF/AVIF (as iPhones save photos)" if head[4:8] == b"ftyp"
             else "TIFF" if head[:4] in (b"II*\0", b"MM\0*") else None)
    if other:
        return (f"; the file is {other}, which TensorFlow does not decode: convert it to "
                "JPEG or PNG")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # text cut inside a character, or binary
        text = head[:e.start].decode("utf-8") if e.start >= 16 else ""
    if text.strip() and all(c.isprintable() or c in "\r\n\t" for c in text):
        shown = " ".join(text.split())[:40]
        return (f"; the file holds text, not an image: it starts with \"{shown}\" (a web "
                "page or message saved under an image's name, as a failed download leaves it)")
    return f"; its first bytes ({head[:4].hex(' ').upper()}) are no image format's"


def _cut_short_note(head, tail):
    """"; the file ends without ...: it looks cut short (...)" for a JPEG or
    PNG file (first bytes `head`, last bytes `tail`) that does not end as one
    must (the JPEG end marker FF D9, the PNG IEND chunk), as an interrupted
    download or copy leaves it; else ""."""
    tail = tail.rstrip(b"\0\r\n ")
    if head.startswith(b"\xff\xd8") and not tail.endswith(b"\xff\xd9"):
        end = "the JPEG end marker"
    elif head.startswith(_PNG_MAGIC) and not tail.endswith(b"IEND\xaeB`\x82"):
        end = "the PNG end chunk"
    else:
        return ""
    return (f"; the file ends without {end}: it looks cut short, as an interrupted download "
            "or copy leaves a file")


def decoded_image_dataset(paths, image_size, crop=True, grayscale=False,
                          cache=True, validate=True, on_error="raise",
                          locations=None):
    """Decodes a list of image files in parallel into a cached uint8 dataset.

    The first full pass (run here when `validate` is True) decodes every file
    with `num_parallel_calls=AUTOTUNE`, fills the cache, and finds the files that
    cannot be read or decoded: they raise a `DataError` that names each file and
    its problem, or, with `on_error="skip"`, are dropped with a `DataWarning`
    that lists them.

    Args:
        paths: list of str. Image files.
        image_size: (height, width).
        crop: bool. Center crop (see `resize_and_crop`).
        grayscale: bool. One channel instead of three.
        cache: bool or str. True caches decoded uint8 pixels in memory, a str
            caches them in files named by that prefix, "-" and a key of the
            paths, each file's size and modification time, the settings
            and the mmtl_tf and TensorFlow versions
            (`file_dataset.cache_file`): a prefix used again for other files,
            changed files, another size or another version never reads
            these (tf.data reads any complete cache files of a name), and
            the same files and settings read them again without decoding;
            False decodes every epoch.
        validate: bool. Run the checking pass now (recommended). Without
            it, a bad file raises TensorFlow's error while iterating (or, with
            `"skip"`, is dropped silently).
        on_error: str. `"raise"` or `"skip"`.
        locations: list of str or None. Names for error messages (e.g. the
            captions-file row of each image); defaults to the paths.

    A file named in several rows of `paths` (an image with several
    captions) is decoded and kept once with the in-memory cache (see
    `checked_file_dataset`); a bad one is reported once with all its rows.

    With `cache=True`, `validate`, not `grayscale` and no file used by two
    rows: when the first, the last and six other files evenly spaced
    between (`_looks_ready`) are JPEGs that already have `image_size`
    (RGB), the checking pass first decodes, with a smaller graph, only the
    JPEGs of that size (`_load_ready_jpeg`); the other files, if any, are
    then loaded in a second pass with the full conversion. The pixels are
    the same either way. (A folder where these have that size but many
    others not is then built more slowly: those are read twice. With the
    first file alone deciding, 1,620 JPEGs of 256×256 behind one of
    224×224 took 1.96 against 1.61 s.) Without the conversion in its graph,
    the dataset of such a folder and each epoch's iterator are made faster:
    on 2 cores, for the 1,621 224×224 JPEGs of
    `bench/bench_input_pipeline.py`, the build with the first epoch took
    0.56–0.72 s against 0.69–0.92 s (medians of 7 builds in each of four
    processes, alternated) and 0.79–1.02 s against 1.14–1.31 s as the first
    build in a process.

    Returns:
        (dataset of (index int32, image uint8), list of the kept indices into
        `paths`). The index counts kept rows (see `checked_file_dataset`).
    """
    from mmtl_tf.data.file_dataset import checked_file_dataset

    image_size = check_image_size(image_size)
    quick = None
    if not grayscale and validate and cache is True and _looks_ready(paths, image_size):
        quick = lambda p: _load_ready_jpeg(p, image_size)  # noqa: E731
    return checked_file_dataset(
        paths, lambda p: _load_and_preprocess(p, image_size, crop, grayscale),
        lambda path: _describe_failure(path, image_size, crop, grayscale), "image files",
        cache=cache, validate=validate, on_error=on_error, locations=locations,
        quick_load=quick, cache_key=f"size={tuple(image_size)} crop={bool(crop)} "
                                    f"grayscale={bool(grayscale)}")
