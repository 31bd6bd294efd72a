#!/usr/bin/env python3
"""A COCO split of very large photos (default 12000x9000), half of them progressive, to check
that `dsprep presize` keeps memory bounded when several decode at once.

Usage: make_huge.py OUT [--count 6] [--width 12000] [--height 9000]
Needs Pillow and numpy; uses one Debian wallpaper as texture when present.
"""
import argparse, glob, json, os

import numpy as np
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--width", type=int, default=12000)
    ap.add_argument("--height", type=int, default=9000)
    a = ap.parse_args()
    img_dir = os.path.join(a.out, "train")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(os.path.join(a.out, "annotations"), exist_ok=True)
    src = sorted(glob.glob("/usr/share/wallpapers/*/contents/images/*.jpg"))
    base = Image.open(src[0]).convert("RGB") if src else Image.new("RGB", (64, 48), (90, 120, 150))
    big = base.resize((a.width, a.height), Image.BILINEAR)
    px = np.asarray(big, dtype=np.int16)
    noise = np.random.default_rng(0).normal(0, 4, (a.height, a.width, 1)).astype(np.int16)
    big = Image.fromarray(np.clip(px + noise, 0, 255).astype(np.uint8))
    images, anns = [], []
    for i in range(a.count):
        name = f"huge_{i:02d}.jpg"
        big.save(os.path.join(img_dir, name), "JPEG", quality=90, progressive=(i % 2 == 1))
        images.append({"id": i + 1, "file_name": name, "width": a.width, "height": a.height})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                     "bbox": [100, 200, 3000, 2000], "area": 6e6})
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    with open(os.path.join(a.out, "annotations", "instances_train.json"), "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main()
