#!/usr/bin/env python3
"""End-to-end PSNR of presized JPEGs against a float Lanczos3 resize of the full image.

Usage: psnr.py IMAGES_DIR --count N NAME=OUT_DIR [NAME=OUT_DIR ...]

Reference: the original decoded at full size (Pillow/libjpeg-turbo, no draft), each channel
resized in 32-bit float with LANCZOS (a=3) straight to the output size of the file being
judged (sizes can differ by a pixel between tools), compared in RGB over all channels. The
outputs are decoded JPEGs at the tools' quality with 4:2:0 chroma, so this includes the
encoding loss, which all tools share; the resize stage alone is measured by
examples/presize_stages --psnr.
"""
import os, sys

import numpy as np
from PIL import Image


def reference(src, size, cache):
    key = size
    if key not in cache:
        chans = [c.resize(size, Image.LANCZOS) for c in (b.convert("F") for b in src.split())]
        cache[key] = np.stack([np.asarray(c, dtype=np.float64) for c in chans], axis=-1)
    return cache[key]


def main():
    images = sys.argv[1]
    count = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 30
    tools = [a.split("=", 1) for a in sys.argv[2:] if "=" in a]
    names = sorted(n for n in os.listdir(images) if n.lower().endswith(".jpg"))[:count]
    scores = {t: [] for t, _ in tools}
    for n in names:
        src = Image.open(os.path.join(images, n)).convert("RGB")
        cache = {}
        for tool, out in tools:
            path = os.path.join(out, n)
            if not os.path.exists(path):
                continue
            got = Image.open(path).convert("RGB")
            ref = np.clip(np.round(reference(src, got.size, cache)), 0, 255)
            mse = np.mean((np.asarray(got, dtype=np.float64) - ref) ** 2)
            scores[tool].append(99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    for tool, s in scores.items():
        if s:
            s = sorted(s)
            print(f"{tool}: PSNR (RGB, final JPEG) min {s[0]:.2f} median {s[len(s)//2]:.2f} max {s[-1]:.2f} dB over {len(s)} images")


if __name__ == "__main__":
    main()
