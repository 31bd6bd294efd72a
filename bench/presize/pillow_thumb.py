#!/usr/bin/env python3
"""Pillow's thumbnail() as a presize baseline: draft (DCT-scaled decode) + LANCZOS with
reducing_gap=2, saved as JPEG at the given quality (4:2:0, Pillow's default).

Usage: pillow_thumb.py IMAGES_DIR OUT_DIR [--size 704] [--quality 90] [--workers 1]
"""
import argparse, os, sys, time
from multiprocessing import Pool

from PIL import Image


def one(job):
    src, dst, size, quality = job
    im = Image.open(src)
    im.thumbnail((size, size), Image.LANCZOS, reducing_gap=2.0)
    im.save(dst, "JPEG", quality=quality)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=704)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    names = sorted(n for n in os.listdir(a.images) if n.lower().endswith((".jpg", ".jpeg")))
    jobs = [(os.path.join(a.images, n), os.path.join(a.out, n), a.size, a.quality) for n in names]
    t = time.time()
    if a.workers == 1:
        for j in jobs:
            one(j)
    else:
        with Pool(a.workers) as p:
            p.map(one, jobs, chunksize=4)
    print(f"{len(jobs)} images in {time.time() - t:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
