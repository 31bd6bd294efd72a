#!/usr/bin/env python3
"""The Pillow baseline of bench/cpu/run.sh: what a plain PyTorch-style CPU loader does per image,
in N worker processes (multiprocessing), over the same dsprep shards.

Per record: read it through the shard's `.idx` offsets, take `image/encoded` out of the
tf.train.Example (a small protobuf walk, below), `PIL.Image.open(...).convert("RGB")`, resize to
SIZE×SIZE with `Image.BILINEAR` (Pillow's antialiased triangle filter, the filter dsprep's
reference implements), a random horizontal flip (p = 0.5, as `verify-throughput` does), and
normalise to float32 CHW with the ImageNet mean/std (`(x - mean) / std`, in place, then one
contiguous transpose: what torchvision's ToTensor + Normalize amount to).

Generous to Pillow on purpose: the workers return a scalar, not the tensor, so no inter-process
copy is timed (a real DataLoader pays one), and the TFRecord CRCs are not checked (dsprep checks
both). Output: one JSON line {"tool": "pillow", "procs": N, "images": n, "seconds": s,
"images_per_s": r, "passes": p}.

Usage: pillow_loader.py SHARD_DIR [--procs N] [--size 640] [--passes 2] [--limit N]
"""

import argparse
import glob
import io
import json
import multiprocessing as mp
import os
import random
import sys
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
INV_STD = 1.0 / (np.array([0.229, 0.224, 0.225], np.float32) * 255)


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7


def fields(b):
    """(field number, wire type, value) of one protobuf message; value is bytes for wire
    type 2, an int otherwise."""
    i, n = 0, len(b)
    while i < n:
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            ln, i = varint(b, i)
            v, i = b[i:i + ln], i + ln
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield f, wt, v


def encoded_image(example):
    """`image/encoded` of a serialized tf.train.Example: Example{1: Features{1: map entry
    {1: key, 2: Feature{1: BytesList{1: value}}}}}."""
    for f, _, features in fields(example):
        if f != 1:
            continue
        for g, _, entry in fields(features):
            if g != 1:
                continue
            key = feat = None
            for h, _, v in fields(entry):
                if h == 1:
                    key = bytes(v)
                elif h == 2:
                    feat = v
            if key == b"image/encoded" and feat is not None:
                for k, _, blist in fields(feat):
                    if k == 1:
                        for m, _, value in fields(blist):
                            if m == 1:
                                return bytes(value)
    raise ValueError("no image/encoded")


def records(shard_dir):
    """(tfrecord path, offset, size) of every record, from the `.idx` files."""
    out = []
    for tf in sorted(glob.glob(os.path.join(shard_dir, "*.tfrecord"))):
        idx = tf[: -len(".tfrecord")] + ".idx"
        with open(idx) as f:
            for line in f:
                off, size = line.split()
                out.append((tf, int(off), int(size)))
    if not out:
        sys.exit(f"no *.tfrecord with .idx in {shard_dir}")
    return out


_files = {}
_size = 640
_rng = random.Random(0)


def init(size, seed):
    global _size, _rng
    _size = size
    _rng = random.Random(seed + os.getpid())


def one(rec):
    path, off, size = rec
    f = _files.get(path)
    if f is None:
        f = _files[path] = open(path, "rb")
    f.seek(off)
    raw = f.read(size)
    n = int.from_bytes(raw[:8], "little")
    payload = memoryview(raw)[12:12 + n]
    im = Image.open(io.BytesIO(encoded_image(payload))).convert("RGB")
    im = im.resize((_size, _size), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32)
    if _rng.random() < 0.5:
        a = a[:, ::-1]
    a = a - MEAN
    a *= INV_STD
    chw = np.ascontiguousarray(a.transpose(2, 0, 1))
    return float(chw[0, 0, 0])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shard_dir")
    p.add_argument("--procs", type=int, default=os.cpu_count())
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--passes", type=int, default=2, help="passes over the records that are timed")
    p.add_argument("--limit", type=int, default=0, help="use only the first N records")
    a = p.parse_args()
    recs = records(a.shard_dir)
    if a.limit:
        recs = recs[: a.limit]
    ctx = mp.get_context("fork")
    with ctx.Pool(a.procs, initializer=init, initargs=(a.size, 1)) as pool:
        # Warm-up (untimed): start every worker, import, open files, fill the page cache.
        list(pool.imap_unordered(one, recs[: 4 * a.procs], chunksize=1))
        t0 = time.perf_counter()
        n = 0
        for _ in range(a.passes):
            for _ in pool.imap_unordered(one, recs, chunksize=8):
                n += 1
        dt = time.perf_counter() - t0
    print(json.dumps({"tool": "pillow", "procs": a.procs, "images": n, "seconds": round(dt, 3),
                      "images_per_s": round(n / dt, 1), "passes": a.passes}))


if __name__ == "__main__":
    main()
