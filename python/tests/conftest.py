"""Fixtures for the loader tests: a small COCO folder made here (Pillow), converted by the real
`dsprep convert` (DSPREP_BIN, else the release binary of the cargo target folder), and an
independent reader of the shards (pure Python: TFRecord framing + tf.train.Example protobuf),
so expected boxes never come from the code under test."""

import json
import os
import pathlib
import random
import shutil
import struct
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def dsprep_bin():
    if os.environ.get("DSPREP_BIN"):
        return os.environ["DSPREP_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    b = target / "release" / "dsprep"
    if not b.exists():
        pytest.skip(f"no dsprep binary (set DSPREP_BIN or build {b})")
    return str(b)


SIZES = [(64, 48), (48, 64), (40, 40), (80, 30), (33, 57), (100, 75), (17, 90), (64, 64),
         (90, 45), (45, 91), (120, 80), (31, 31)]


def make_coco(root, n=26, split="train", seed=0):
    from PIL import Image
    rnd = random.Random(seed)
    img_dir = root / split
    img_dir.mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        im = Image.new("RGB", (w, h))
        px = im.load()
        for y in range(h):
            for x in range(w):
                px[x, y] = ((x * 255) // max(w - 1, 1), (y * 255) // max(h - 1, 1), (x * y + 40 * i) % 256)
        name = f"{i:06d}.jpg"
        im.save(img_dir / name, quality=92)
        iid = 1000 + 7 * i
        images.append({"id": iid, "file_name": name, "width": w, "height": h})
        for k in range(i % 4):
            bw, bh = rnd.uniform(2, w / 2), rnd.uniform(2, h / 2)
            bx, by = rnd.uniform(0, w - bw), rnd.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1 + (k * 3 + i) % 5,
                         "bbox": [bx, by, bw, bh], "area": bw * bh, "iscrowd": int(k == 2)})
    cats = [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in range(1, 6)]
    (root / "annotations").mkdir(exist_ok=True)
    with open(root / "annotations" / f"instances_{split}.json", "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """{'tfrecord': dir, 'lmdb': dir, 'multi': dir with two splits} of the same 26 images."""
    base = tmp_path_factory.mktemp("loader")
    coco = base / "coco"
    make_coco(coco)
    out = {}
    for fmt in ("tfrecord", "lmdb"):
        d = base / fmt
        subprocess.run([dsprep_bin(), "convert", str(coco), str(d), "--shards", "3",
                        "--format", fmt, "-q"], check=True)
        out[fmt] = d
    multi = base / "coco2"
    make_coco(multi, n=6, split="train")
    make_coco(multi, n=5, split="val", seed=1)
    subprocess.run([dsprep_bin(), "convert", str(multi), str(base / "multi"), "-q"], check=True)
    out["multi"] = base / "multi"
    return out


@pytest.fixture()
def corrupt_copy(shards, tmp_path):
    """A copy of the TFRecord folder whose record 1 of the first shard has a damaged payload
    (its CRC fails); returns (folder, global record number of the damaged record)."""
    d = tmp_path / "bad"
    shutil.copytree(shards["tfrecord"], d)
    first = sorted(d.glob("*.tfrecord"))[0]
    idx = first.with_suffix(".idx").read_text().split("\n")
    off, size = (int(x) for x in idx[1].split())
    b = bytearray(first.read_bytes())
    b[off + 12 + 200] ^= 0x5A
    first.write_bytes(bytes(b))
    return d, 1


# ---- independent reader ----

def _varint(b, i):
    v, s = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
            yield f, v
        elif wt == 2:
            n, i = _varint(b, i)
            yield f, b[i:i + n]
            i += n
        elif wt == 5:
            yield f, b[i:i + 4]
            i += 4
        elif wt == 1:
            yield f, b[i:i + 8]
            i += 8
        else:
            raise ValueError(wt)


def parse_example(payload):
    feats = {}
    for f, features in _fields(payload):
        assert f == 1
        for f2, entry in _fields(features):
            key, value = None, None
            for f3, v in _fields(entry):
                if f3 == 1:
                    key = bytes(v).decode()
                else:
                    value = v
            kind, lst = next(_fields(value))
            items = []
            for f5, v in _fields(lst):
                if kind == 1:
                    items.append(bytes(v))
                elif kind == 2:
                    items.extend(struct.unpack(f"<{len(v) // 4}f", bytes(v)))
                else:
                    if isinstance(v, int):
                        items.append(v)
                    else:
                        j = 0
                        while j < len(v):
                            x, j = _varint(v, j)
                            items.append(x)
            feats[key] = items
    return feats


def read_records(folder):
    """Every record of the folder's manifest-listed shards, in the loader's global order."""
    man = json.loads((pathlib.Path(folder) / "manifest.json").read_text())
    out = []
    for split in man["splits"]:
        for s in split["shards"]:
            p = pathlib.Path(folder) / s["file"]
            if p.suffix == ".tfrecord":
                data = p.read_bytes()
                i = 0
                while i < len(data):
                    (n,) = struct.unpack_from("<Q", data, i)
                    out.append(parse_example(data[i + 12:i + 12 + n]))
                    i += n + 16
    return out


def record_info(r):
    f = lambda k: r.get(k, [])
    return {
        "id": int(r["image/source_id"][0]),
        "w": r["image/width"][0],
        "h": r["image/height"][0],
        "boxes": list(zip(f("image/object/bbox/xmin"), f("image/object/bbox/ymin"),
                          f("image/object/bbox/xmax"), f("image/object/bbox/ymax"))),
        "labels": f("image/object/class/label"),
        "crowd": f("image/object/is_crowd"),
    }
