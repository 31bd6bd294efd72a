#!/usr/bin/env python3
"""The peer for `dsprep convert`: a COCO → TFRecord converter written the way the TensorFlow
Object Detection API's create_coco_tf_record.py works (written for this benchmark, not copied):

- json.load of the whole annotation file, an image_id → annotations index;
- per image (in a multiprocessing.Pool over all cores, `pool.imap` keeping input order):
  read the file, PIL.Image.open it (header only), sha256 it, build a tf.train.Example with the
  OD API keys (boxes normalised by the JSON width/height; boxes with w/h <= 0 or past the image
  edge skipped, not clipped; no object keys when an image has no annotations);
- the parent serialises each Example and writes it with tf.io.TFRecordWriter to
  PREFIX-0000i-of-000NN.tfrecord, round-robin (record i → shard i % N).

Usage: tf_converter.py COCO_DIR OUT_DIR [--split train2017] [--shards 16] [--workers N]
"""
import argparse
import collections
import hashlib
import io
import json
import multiprocessing
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _int64(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float(values):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _bytes(values):
    import tensorflow as tf
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def create_tf_example(job):
    """One image → (tf.train.Example, annotations skipped). Runs in a pool worker."""
    import PIL.Image
    import tensorflow as tf

    image, image_dir, anns, category_names = job
    width, height = image["width"], image["height"]
    with open(os.path.join(image_dir, image["file_name"]), "rb") as f:
        encoded = f.read()
    PIL.Image.open(io.BytesIO(encoded))  # as the original: opens (parses the header), no decode
    key = hashlib.sha256(encoded).hexdigest()
    feature = {
        "image/height": _int64([height]),
        "image/width": _int64([width]),
        "image/filename": _bytes([image["file_name"].encode("utf8")]),
        "image/source_id": _bytes([str(image["id"]).encode("utf8")]),
        "image/key/sha256": _bytes([key.encode("utf8")]),
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([b"jpeg"]),
    }
    skipped = 0
    if anns:
        xmin, xmax, ymin, ymax, crowd, names, ids, area = ([] for _ in range(8))
        for a in anns:
            x, y, w, h = a["bbox"]
            if w <= 0 or h <= 0 or x + w > width or y + h > height:
                skipped += 1
                continue
            xmin.append(float(x) / width)
            xmax.append(float(x + w) / width)
            ymin.append(float(y) / height)
            ymax.append(float(y + h) / height)
            crowd.append(a["iscrowd"])
            cid = int(a["category_id"])
            ids.append(cid)
            names.append(category_names[cid].encode("utf8"))
            area.append(a["area"])
        feature.update({
            "image/object/bbox/xmin": _float(xmin),
            "image/object/bbox/xmax": _float(xmax),
            "image/object/bbox/ymin": _float(ymin),
            "image/object/bbox/ymax": _float(ymax),
            "image/object/class/text": _bytes(names),
            "image/object/class/label": _int64(ids),
            "image/object/is_crowd": _int64(crowd),
            "image/object/area": _float(area),
        })
    return tf.train.Example(features=tf.train.Features(feature=feature)), skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("coco_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--split", default="train2017")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args()

    import tensorflow as tf

    t0 = time.perf_counter()
    with open(os.path.join(a.coco_dir, "annotations", f"instances_{a.split}.json")) as f:
        coco = json.load(f)
    image_dir = os.path.join(a.coco_dir, a.split)
    category_names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image = collections.defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    images = coco["images"]
    os.makedirs(a.out_dir, exist_ok=True)
    prefix = os.path.join(a.out_dir, a.split)
    writers = [tf.io.TFRecordWriter(f"{prefix}-{i:05d}-of-{a.shards:05d}.tfrecord")
               for i in range(a.shards)]
    jobs = ((img, image_dir, by_image[img["id"]], category_names) for img in images)
    skipped = 0
    with multiprocessing.Pool(a.workers) as pool:
        for i, (example, n_skipped) in enumerate(pool.imap(create_tf_example, jobs)):
            skipped += n_skipped
            writers[i % a.shards].write(example.SerializeToString())
    for w in writers:
        w.close()
    print(f"{len(images)} images, skipped {skipped} annotations, "
          f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
