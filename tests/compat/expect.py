"""What the records should contain, derived from the COCO source files alone (Pillow + json),
so that a bug in dsprep cannot also be in the expectation."""

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112


def open_source(path):
    """(PIL image, orientation tag or None). Raises for missing or undecodable files."""
    img = Image.open(path)
    img.load()  # full decode: a truncated file raises here, not later
    return img, img.getexif().get(EXIF_ORIENTATION)


def displayed_size(path):
    """(width, height) as a viewer shows the image: EXIF orientations 5–8 swap the sides."""
    img, orient = open_source(path)
    w, h = img.size
    return (h, w) if orient in (5, 6, 7, 8) else (w, h)


def displayed_rgb(path):
    """The pixels an annotation tool showed: EXIF orientation applied, converted to RGB."""
    img, _ = open_source(path)
    return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def libjpeg_warnings(data):
    """Decode with TensorFlow (libjpeg-turbo) and return what libjpeg printed on stderr
    ("Corrupt JPEG data: ..."): it decodes damaged entropy data to garbage with only a warning,
    so the warning is the verdict. Raises when TF refuses the data outright."""
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryFile(mode="w+b") as err:
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            tf.io.decode_image(data, channels=3, expand_animations=False)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        return err.read().decode("utf-8", "replace")


def is_readable_image(path):
    """Pillow reads the whole file AND libjpeg (through TF) decodes it without a corruption
    warning. Pillow alone is lenient: corrupt entropy data only makes libjpeg warn."""
    try:
        open_source(path)
        return "Corrupt JPEG data" not in libjpeg_warnings(Path(path).read_bytes())
    except Exception:
        return False


def needs_reencode(path):
    """True when storing the file's bytes unchanged would show readers other pixels than the
    annotations describe, or is not a JPEG at all."""
    img, orient = open_source(path)
    return img.format != "JPEG" or img.mode not in ("RGB", "L") or orient not in (None, 1)


def normalise(bbox, width, height):
    """COCO [x, y, w, h] in pixels → (xmin, ymin, xmax, ymax) as float32 in [0, 1], or a drop
    reason. Clips boxes that overhang the image; drops non-finite, zero/negative-size, fully
    outside, and boxes with no extent left as float32."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return "invalid"
    if width <= 0 or height <= 0 or not all(math.isfinite(v) for v in (x, y, w, h)):
        return "invalid"
    if w <= 0 or h <= 0:
        return "degenerate"
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return "outside"
    b = tuple(np.float32(v) for v in (x0 / width, y0 / height, x1 / width, y1 / height))
    if b[0] >= b[2] or b[1] >= b[3]:
        return "degenerate"
    return b


def expected_objects(split, image, width, height, label_of):
    """(kept objects sorted, {drop reason: count}) for one image. Each object is
    (xmin, ymin, xmax, ymax, class_text, class_label, is_crowd, area)."""
    kept, dropped = [], {}
    for ann in split.anns_by_image.get(image["id"], []):
        cat = split.categories.get(ann.get("category_id"))
        if cat is None:
            dropped["unknown_category"] = dropped.get("unknown_category", 0) + 1
            continue
        box = normalise(ann.get("bbox"), width, height)
        if isinstance(box, str):
            dropped[box] = dropped.get(box, 0) + 1
            continue
        kept.append((*box, cat["name"].encode("utf-8"), label_of(cat["id"]),
                     int(bool(ann.get("iscrowd", 0))), np.float32(ann.get("area", 0.0))))
    return sorted(kept), dropped


def record_objects(rec):
    """The same tuple shape as expected_objects, from a TF-parsed record, sorted."""
    keys = ["image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax",
            "image/object/bbox/ymax", "image/object/class/text", "image/object/class/label",
            "image/object/is_crowd", "image/object/area"]
    n = len(rec[keys[0]])
    for k in keys:
        assert len(rec[k]) == n, f"{rec['image/filename']!r}: {k} has {len(rec[k])} values, xmin {n}"
    return sorted(
        (np.float32(a), np.float32(b), np.float32(c), np.float32(d), t, int(lab), int(cr),
         np.float32(ar))
        for a, b, c, d, t, lab, cr, ar in zip(*(rec[k] for k in keys)))
