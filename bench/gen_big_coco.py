#!/usr/bin/env python3
"""Generate a COCO-train2017-sized instances file for timing dsprep's annotation parser.

Shape mirrors the real instances_train2017.json (minified, ~450 MB): 118,287 images with the
usual extra fields (license, coco_url, flickr_url, date_captured), ~860k annotations in no
particular image order, polygon segmentations of 2-decimal floats (~1% crowd RLE), 80
categories with COCO's gappy ids 1..90, plus info/licenses. Only the byte volume and structure
matter for the parser, so polygons are drawn from a pre-formatted pool (fast to generate) while
ids, bboxes and areas are unique per annotation. Deterministic for a given --seed.

Usage: python3 bench/gen_big_coco.py [--out PATH] [--images N] [--anns-per-image F] [--seed S]
Then:  cargo run --release --example parse_coco -- PATH
"""

import argparse
import os
import random

COCO_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def polygon_pool(rng, n, mean_points):
    pool = []
    for _ in range(n):
        # Most objects one polygon, some split in 2-3 parts (occlusion), like COCO.
        parts = rng.choices([1, 2, 3], weights=[85, 11, 4])[0]
        polys = []
        for _ in range(parts):
            k = max(3, int(rng.expovariate(1.0 / mean_points)) + 3)
            cx, cy = rng.uniform(20, 600), rng.uniform(20, 460)
            coords = []
            for _ in range(k):
                coords.append("%.2f" % (cx + rng.uniform(-80, 80)))
                coords.append("%.2f" % (cy + rng.uniform(-80, 80)))
            polys.append("[" + ",".join(coords) + "]")
        pool.append("[" + ",".join(polys) + "]")
    return pool


def rle_pool(rng, n):
    pool = []
    for _ in range(n):
        counts = ",".join(str(rng.randint(1, 5000)) for _ in range(rng.randint(50, 400)))
        pool.append('{"counts":[%s],"size":[480,640]}' % counts)
    return pool


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/big_coco/annotations/instances_train_big.json")
    ap.add_argument("--images", type=int, default=118_287)
    ap.add_argument("--anns-per-image", type=float, default=7.3)
    ap.add_argument("--mean-points", type=float, default=18.5,
                    help="mean extra polygon points; 18.5 gives ~450 MB at full size")
    ap.add_argument("--seed", type=int, default=2017)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    polys = polygon_pool(rng, 20_000, args.mean_points)
    rles = rle_pool(rng, 500)

    # Non-contiguous image ids like COCO's (e.g. 9, 25, 30, ... up to 581929).
    image_ids = rng.sample(range(1, 600_000), args.images)
    n_anns = int(args.images * args.anns_per_image)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write('{"info":{"description":"COCO-like synthetic","url":"http://cocodataset.org",'
                '"version":"1.0","year":2017,"contributor":"dsprep bench",'
                '"date_created":"2017/09/01"},"licenses":[')
        f.write(",".join('{"url":"http://creativecommons.org/licenses/%d/","id":%d,"name":"L%d"}'
                         % (i, i, i) for i in range(1, 9)))
        f.write('],"images":[')
        sizes = {}
        for n, iid in enumerate(image_ids):
            w, h = rng.choice([(640, 480), (640, 427), (480, 640), (500, 375), (640, 360)])
            sizes[iid] = (w, h)
            if n:
                f.write(",")
            f.write('{"license":%d,"file_name":"%012d.jpg","coco_url":'
                    '"http://images.cocodataset.org/train2017/%012d.jpg","height":%d,"width":%d,'
                    '"date_captured":"2013-11-14 11:18:45","flickr_url":'
                    '"http://farm4.staticflickr.com/3153/2970773875_164f0c0b83_z.jpg","id":%d}'
                    % (rng.randint(1, 8), iid, iid, h, w, iid))
        f.write('],"annotations":[')
        # ~1% of images get no annotation at all (COCO has ~1k such images in train2017).
        annotated = image_ids[: int(len(image_ids) * 0.99)]
        for aid in range(1, n_anns + 1):
            iid = rng.choice(annotated)
            w, h = sizes[iid]
            bw, bh = rng.uniform(1, w / 2), rng.uniform(1, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            crowd = rng.random() < 0.009
            seg = rng.choice(rles) if crowd else rng.choice(polys)
            if aid > 1:
                f.write(",")
            f.write('{"segmentation":%s,"area":%.4f,"iscrowd":%d,"image_id":%d,'
                    '"bbox":[%.2f,%.2f,%.2f,%.2f],"category_id":%d,"id":%d}'
                    % (seg, bw * bh * 0.6, int(crowd), iid, x, y, bw, bh,
                       rng.choice(COCO_IDS), aid))
        f.write('],"categories":[')
        f.write(",".join('{"supercategory":"sc%d","id":%d,"name":"category %d"}' % (c // 10, c, c)
                         for c in COCO_IDS))
        f.write("]}")
    os.replace(tmp, args.out)
    size = os.path.getsize(args.out)
    print("%s: %d images, %d annotations, %.1f MB" % (args.out, len(image_ids), n_anns, size / 1e6))


if __name__ == "__main__":
    main()
