"""TensorFlow reads dsprep's TFRecords with the TF Object Detection API feature spec, decodes every
image, and finds exactly what the COCO source says (nothing silently dropped)."""

import hashlib
import re
from collections import Counter

import numpy as np
import pytest

from compat_util import expected_index, read_framed
from expect import (displayed_rgb, displayed_size, expected_objects, is_readable_image,
                    needs_reencode, record_objects)

pytestmark = pytest.mark.requires("tensorflow", "numpy", "PIL", "xxhash")


def label_fn(conv):
    """What image/object/class/label should hold, per the manifest's label mode."""
    mode = conv.manifest["options"]["labels"]
    if mode == "coco":
        return lambda cat_id: cat_id
    contiguous = {c["id"]: c["contiguous_label"] for c in conv.manifest["categories"]}
    assert sorted(contiguous.values()) == list(range(len(contiguous)))
    return lambda cat_id: contiguous[cat_id]


def by_id(records):
    out = {}
    for rec in records:
        sid = rec["image/source_id"].decode("utf-8")
        assert sid not in out, f"image id {sid} stored twice"
        out[sid] = rec
    return out


def test_every_image_is_a_record_or_listed_as_skipped(tf_records, tfrecord_out, coco_splits):
    for name, split in coco_splits.items():
        records = by_id(tf_records[name])
        skipped = tfrecord_out.skipped(name)
        for image in split.images.values():
            sid, fname = str(image["id"]), image["file_name"]
            if sid in records:
                assert fname not in skipped, f"{fname!r} is a record and also listed as skipped"
                assert records[sid]["image/filename"].decode("utf-8") == fname
            else:
                assert fname in skipped, f"{name}: image {sid} {fname!r} silently dropped"
        assert set(records) <= {str(i) for i in split.images}, "records for unknown image ids"
        entry = tfrecord_out.split(name)
        assert entry["images"] == len(split.images)
        assert entry["records"] == len(records) == entry["counts"]["records"]
        assert entry["counts"]["skipped"] == len(skipped) == len(split.images) - len(records)
        # Per shard: the manifest's record counts are what TF reads from that shard.
        per_shard = Counter(rec["shard"] for rec in tf_records[name])
        # Shards whose images were all skipped are not written (DALI rejects empty indexes).
        for sh in entry["shards"]:
            if not sh["records"]:
                assert not (tfrecord_out.out / sh["file"]).exists(), sh["file"]
        written = [sh for sh in entry["shards"] if sh["records"]]
        for i, sh in enumerate(written):
            assert sh["records"] == per_shard.get(i, 0), f"shard {sh['file']}"


def test_skipped_images_are_really_unreadable(tfrecord_out, coco_splits):
    """Skipping is for files that are missing or not decodable, never for good images."""
    for name, split in coco_splits.items():
        for fname, reason in tfrecord_out.skipped(name).items():
            path = split.images_dir / fname
            assert reason, f"{fname!r} skipped without a reason"
            assert not is_readable_image(path), f"{fname!r} skipped ({reason}) but Pillow and TF decode it"


def test_records_decode_to_their_stated_size(tf_records, coco_splits):
    for name, split in coco_splits.items():
        for rec in tf_records[name]:
            fname = rec["image/filename"].decode("utf-8")
            h, w = rec["image/height"], rec["image/width"]
            assert rec["decoded"].shape == (h, w, 3), fname
            assert rec["image/format"] == b"jpeg", fname
            assert rec["image/encoded"][:2] == b"\xff\xd8", f"{fname!r}: not a JPEG"
            digest = hashlib.sha256(rec["image/encoded"]).hexdigest()
            assert rec["image/key/sha256"].decode("ascii") == digest, fname
            # The size a viewer shows for the source file (after EXIF orientation).
            assert (w, h) == displayed_size(split.images_dir / fname), fname


def test_boxes_and_classes_match_the_coco_json(tf_records, tfrecord_out, coco_splits):
    label_of = label_fn(tfrecord_out)
    for name, split in coco_splits.items():
        records = by_id(tf_records[name])
        kept_total, dropped_total = 0, Counter()
        for image in split.images.values():
            rec = records.get(str(image["id"]))
            if rec is None:
                continue
            # Boxes live in the frame the annotation file describes: its width/height when
            # given (what the labelling tool saw, even if the file on disk differs), else the
            # image's own size.
            if image.get("width", 0) > 0 and image.get("height", 0) > 0:
                frame = (image["width"], image["height"])
            else:
                frame = (rec["image/width"], rec["image/height"])
            want, dropped = expected_objects(split, image, *frame, label_of)
            got = record_objects(rec)
            fname = image["file_name"]
            assert len(got) == len(want), f"{fname!r}: {len(got)} boxes, expected {len(want)}"
            for g, e in zip(got, want):
                np.testing.assert_allclose(g[:4], e[:4], rtol=0, atol=1e-6, err_msg=fname)
                assert g[4:7] == e[4:7], f"{fname!r}: class/crowd {g[4:7]} != {e[4:7]}"
                np.testing.assert_allclose(g[7], e[7], rtol=1e-6, err_msg=f"{fname} area")
            for g in got:
                assert 0.0 <= g[0] < g[2] <= 1.0 and 0.0 <= g[1] < g[3] <= 1.0, (fname, g)
            kept_total += len(got)
            dropped_total.update(dropped)
        counts = tfrecord_out.split(name)["counts"]
        assert counts["boxes_kept"] + counts["boxes_clipped"] == kept_total
        geometric = sum(v for k, v in dropped_total.items() if k != "unknown_category")
        assert sum(counts["boxes_dropped"].values()) == geometric, counts["boxes_dropped"]


def test_original_bytes_kept_unless_reencoded(tf_records, tfrecord_out, coco_splits):
    """A clean JPEG is stored byte-identical; anything else is re-encoded AND says so."""
    for name, split in coco_splits.items():
        reencoded = tfrecord_out.reencoded(name)
        for rec in tf_records[name]:
            fname = rec["image/filename"].decode("utf-8")
            source = (split.images_dir / fname).read_bytes()
            if needs_reencode(split.images_dir / fname):
                assert fname in reencoded, f"{fname!r} needs re-encoding but is not listed"
            if fname in reencoded:
                assert rec["image/encoded"] != source, f"{fname!r} listed as re-encoded"
            else:
                assert rec["image/encoded"] == source, f"{fname!r} changed but not listed"


def test_pixels_are_what_the_annotations_describe(tf_records, tfrecord_out, coco_splits):
    """TF's decoded pixels ≈ the source as a viewer shows it (EXIF applied): a rotation or a
    channel mix-up gives a mean difference of tens of levels, JPEG re-encoding a few."""
    for name, split in coco_splits.items():
        reencoded = tfrecord_out.reencoded(name)
        for rec in tf_records[name]:
            fname = rec["image/filename"].decode("utf-8")
            want = displayed_rgb(split.images_dir / fname).astype(np.int16)
            got = rec["decoded"].astype(np.int16)
            assert got.shape == want.shape, fname
            diff = float(np.abs(got - want).mean())
            limit = 8.0 if fname in reencoded else 2.0
            assert diff < limit, f"{fname!r}: mean |TF - source| = {diff:.2f} (limit {limit})"


def test_index_files_pair_with_shards_and_match(tfrecord_out, coco_splits):
    for name in coco_splits:
        entry = tfrecord_out.split(name)
        for sh in entry["shards"]:
            shard = tfrecord_out.out / sh["file"]
            if not sh["records"]:
                assert not shard.exists() and sh["index"] is None, sh
                continue
            idx = tfrecord_out.out / sh["index"]
            assert shard.suffix == ".tfrecord" and idx.suffix == ".idx"
            assert shard.stem == idx.stem, f"index {idx.name} not paired with {shard.name}"
            assert re.fullmatch(rf"{re.escape(name)}-\d{{5}}-of-\d{{5}}", shard.stem), shard.name
            assert idx.read_text(encoding="ascii") == expected_index(shard), idx.name
            import xxhash

            data = shard.read_bytes()
            assert sh["bytes"] == len(data)
            assert sh["checksum"] == "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)
            assert sh["records"] == len(read_framed(shard))
        n = len(entry["shards"])
        assert all(sh["file"].endswith(f"-of-{n:05d}.tfrecord") for sh in entry["shards"])


def test_label_map_lists_the_categories(tfrecord_out, coco_splits):
    text = (tfrecord_out.out / "label_map.pbtxt").read_text(encoding="utf-8")
    items = re.findall(r'item\s*\{\s*name:\s*"((?:[^"\\]|\\.)*)"\s*id:\s*(\d+)', text)
    got = {int(i): n.replace('\\"', '"').replace("\\\\", "\\") for n, i in items}
    want = {}
    for split in coco_splits.values():
        want.update({cid: c["name"] for cid, c in split.categories.items()})
    assert got == want
