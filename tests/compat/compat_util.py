"""Helpers shared by the compat tests (no pytest fixtures here; see conftest.py)."""

import json
import os
import struct
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
# Exit codes of `dsprep` (src/cmd/mod.rs): finished but some inputs skipped; failed.
EXIT_PROBLEMS = 1
EXIT_FAILURE = 2


# ----------------------------------------------------------------------------- pure-Python readers


def read_framed(path):
    """[(offset, payload)] of a TFRecord file, framing parsed by hand (lengths only; TF's own
    reader checks the CRCs in the tests that matter). Fails on a truncated tail."""
    data = Path(path).read_bytes()
    out, off = [], 0
    while off < len(data):
        assert off + 12 <= len(data), f"{path}: truncated header at {off}"
        (n,) = struct.unpack_from("<Q", data, off)
        end = off + 12 + n + 4
        assert end <= len(data), f"{path}: truncated record at {off}"
        out.append((off, data[off + 12: off + 12 + n]))
        off = end
    return out


def expected_index(path):
    """The DALI tfrecord2idx text for a TFRecord file: '<offset> <payload+16>\\n' per record."""
    return "".join(f"{off} {len(p) + 16}\n" for off, p in read_framed(path))


# ----------------------------------------------------------------------------- COCO source


class CocoSplit:
    """One split of the source dataset, parsed independently of dsprep."""

    def __init__(self, name, ann_path, images_dir):
        self.name = name
        self.ann_path = Path(ann_path)
        self.images_dir = Path(images_dir)
        with open(ann_path, encoding="utf-8") as f:
            coco = json.load(f)
        self.images = {img["id"]: img for img in coco["images"]}
        self.categories = {c["id"]: c for c in coco["categories"]}
        self.anns_by_image = {}
        for a in coco.get("annotations", []):
            self.anns_by_image.setdefault(a.get("image_id"), []).append(a)

    def path_of(self, image):
        return self.images_dir / image["file_name"]


def discover_splits(root):
    """Standard COCO layout only: annotations/instances_<split>.json + <split>/ or images/<split>/."""
    splits = []
    for ann in sorted((root / "annotations").glob("instances_*.json")):
        name = ann.stem[len("instances_"):]
        for cand in (root / name, root / "images" / name):
            if cand.is_dir():
                splits.append(CocoSplit(name, ann, cand))
                break
    return splits


# ----------------------------------------------------------------------------- dsprep


def run_dsprep(binary, *args, ok_codes=(0,)):
    proc = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    assert proc.returncode in ok_codes, (
        f"dsprep {' '.join(map(str, args))} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


class Converted:
    """An output folder of `dsprep convert` plus its manifest."""

    def __init__(self, out, proc):
        self.out = Path(out)
        self.proc = proc
        self.manifest = json.loads((self.out / "manifest.json").read_text(encoding="utf-8"))

    def split(self, name):
        for s in self.manifest["splits"]:
            if s["name"] == name:
                return s
        raise AssertionError(f"split {name!r} not in manifest: "
                             f"{[s['name'] for s in self.manifest['splits']]}")

    def shard_paths(self, split):
        return [self.out / sh["file"] for sh in self.split(split)["shards"] if sh["records"]]

    def index_paths(self, split):
        return [self.out / sh["index"] for sh in self.split(split)["shards"] if sh["records"]]

    def skipped(self, split):
        """{file_name: reason} of the split's images that did not become records."""
        return {n["file_name"]: n["reason"]
                for sh in self.split(split)["shards"] for n in sh["skipped"]}

    def reencoded(self, split):
        return {n["file_name"]: n["reason"]
                for sh in self.split(split)["shards"] for n in sh["reencoded"]}


def convert(binary, src, out, *extra):
    """Run `dsprep convert` and check the exit code against the manifest: 0 when every image
    became a record, EXIT_PROBLEMS when some were skipped."""
    proc = run_dsprep(binary, "convert", src, out, "--quiet", *extra,
                      ok_codes=(0, EXIT_PROBLEMS))
    conv = Converted(out, proc)
    assert conv.manifest["complete"] is True
    skipped = sum(s["counts"]["skipped"] for s in conv.manifest["splits"])
    want = EXIT_PROBLEMS if skipped else 0
    assert proc.returncode == want, (
        f"{skipped} skipped but exit code {proc.returncode}\nstderr:\n{proc.stderr}")
    return conv


# ----------------------------------------------------------------------------- TensorFlow view


def tf_feature_spec():
    import tensorflow as tf

    fixed = lambda t: tf.io.FixedLenFeature([], t)  # noqa: E731
    var = tf.io.VarLenFeature
    return {
        "image/height": fixed(tf.int64),
        "image/width": fixed(tf.int64),
        "image/filename": fixed(tf.string),
        "image/source_id": fixed(tf.string),
        "image/key/sha256": fixed(tf.string),
        "image/encoded": fixed(tf.string),
        "image/format": fixed(tf.string),
        "image/object/bbox/xmin": var(tf.float32),
        "image/object/bbox/ymin": var(tf.float32),
        "image/object/bbox/xmax": var(tf.float32),
        "image/object/bbox/ymax": var(tf.float32),
        "image/object/class/text": var(tf.string),
        "image/object/class/label": var(tf.int64),
        "image/object/is_crowd": var(tf.int64),
        "image/object/area": var(tf.float32),
    }


def tf_read_split(paths):
    """Every record of `paths` (in shard order) through tf.data + parse_single_example, as plain
    Python values, plus the raw serialized bytes, the shard number and the decoded image."""
    import tensorflow as tf

    spec = tf_feature_spec()
    records = []
    for shard, path in enumerate(paths):
        for raw in tf.data.TFRecordDataset([str(path)]):
            ex = tf.io.parse_single_example(raw, spec)
            rec = {"raw": raw.numpy(), "shard": shard}
            for key, val in ex.items():
                if isinstance(val, tf.sparse.SparseTensor):
                    rec[key] = val.values.numpy().tolist()
                else:
                    rec[key] = val.numpy().item() if val.dtype != tf.string else val.numpy()
            rec["decoded"] = tf.io.decode_jpeg(ex["image/encoded"], channels=3).numpy()
            records.append(rec)
    return records
