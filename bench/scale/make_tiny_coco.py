#!/usr/bin/env python3
"""A COCO folder of N tiny JPEGs for the million-image convert benchmark (bench/scale/run.sh).

Images: the committed 64x48 baseline fixture (fixtures/coco/val/000001.jpg) with a COM marker
carrying a number inserted after SOI, so there are --distinct different files (valid JPEGs,
stored byte-identical by convert); the N listed images are hard links to them, 1000 per folder,
so a million images cost a million directory entries, not a million inodes and data blocks.
Annotations: --anns-per-image boxes per image (COCO-like fields). Deterministic.

Usage: make_tiny_coco.py OUT_DIR --images 1000000 [--distinct 1000] [--anns-per-image 2]
"""
import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "..", "fixtures", "coco", "val", "000001.jpg")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--distinct", type=int, default=1000)
    ap.add_argument("--anns-per-image", type=int, default=2)
    args = ap.parse_args()

    base = open(FIXTURE, "rb").read()
    assert base[:2] == b"\xff\xd8"
    pool = os.path.join(args.out, "pool")
    split = os.path.join(args.out, "train")
    os.makedirs(pool, exist_ok=True)
    os.makedirs(os.path.join(args.out, "annotations"), exist_ok=True)
    for d in range(args.distinct):
        text = b"dsprep bench %08d" % d
        com = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
        with open(os.path.join(pool, "%05d.jpg" % d), "wb") as f:
            f.write(base[:2] + com + base[2:])

    ann_path = os.path.join(args.out, "annotations", "instances_train.json")
    with open(ann_path, "w") as f:
        f.write('{"info": {}, "licenses": [], "categories": [')
        f.write(",".join('{"id": %d, "name": "c%d", "supercategory": "x"}' % (c, c)
                         for c in range(1, 81)))
        f.write('], "images": [')
        for i in range(args.images):
            folder = "%04d" % (i // 1000)
            if i % 1000 == 0:
                os.makedirs(os.path.join(split, folder), exist_ok=True)
            name = "%s/%07d.jpg" % (folder, i)
            dst = os.path.join(split, name)
            if not os.path.exists(dst):
                os.link(os.path.join(pool, "%05d.jpg" % (i % args.distinct)), dst)
            f.write("%s{\"id\": %d, \"file_name\": \"%s\", \"width\": 64, \"height\": 48, "
                    "\"license\": 1}" % ("," if i else "", i + 1, name))
        f.write('], "annotations": [')
        aid = 0
        for i in range(args.images):
            for a in range(args.anns_per_image):
                aid += 1
                x, y = 2 + (i + a) % 20, 3 + (i * 7 + a) % 15
                f.write("%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, "
                        "\"bbox\": [%d, %d, 20, 16], \"area\": 320, \"iscrowd\": 0, "
                        "\"segmentation\": [[%d, %d, %d, %d, %d, %d]]}"
                        % ("," if aid > 1 else "", aid, i + 1, 1 + (i + a) % 80, x, y,
                           x, y, x + 20, y, x + 20, y + 16))
        f.write("]}\n")
    print(json.dumps({"out": args.out, "images": args.images,
                      "annotations": args.images * args.anns_per_image,
                      "annotation_bytes": os.path.getsize(ann_path)}))


if __name__ == "__main__":
    main()
