#!/usr/bin/env python3
"""A detection-style training loop fed by different loaders, side by side (bench/BENCHMARKS.md).

  train_bench.py SHARDS --coco COCO_DIR [--seconds 20] [--only dsprep,torch,synthetic,alone]

Model: timm resnet18 at 640x640, bf16 autocast, channels_last, batch 256, SGD step per batch.
Feeds: dsprep.Loader (letterbox, flip 0.5, float16), DALI 2.4 doing the same ('dali',
'dali_alone': see dali_batches), a PyTorch DataLoader with 16 workers
(Pillow decode + letterbox + flip + normalise, pinned memory), synthetic batches already on the
GPU (the upper bound). 'alone': dsprep.Loader with no model (all decoders, all cores).
For each: images/s over the measured window (after a warm-up), GPU utilisation sampled by
nvidia-smi (NVML) every 100 ms, CPU cores used = CPU time of the process and its children /
wall time. One JSON line per feed on stdout.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import torch

# Before anything starts CUDA: the package then asks CUDA for the hardware queues its GPU
# pipeline needs (CUDA_DEVICE_MAX_CONNECTIONS=32, README "Python loader"); every feed of the
# run shares that setting.
try:
    import dsprep
except ImportError:  # a DALI-only or DataLoader-only run
    dsprep = None

S, B = 640, 256


def tree_cpu_seconds():
    """utime+stime of this process and all its descendants (live ones, from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                kids[int(d)] = (int(parts[1]), (int(parts[11]) + int(parts[12])) / tick)
            except (OSError, IndexError, ValueError):
                pass
    me, total, frontier = os.getpid(), 0.0, [os.getpid()]
    seen = set()
    while frontier:
        p = frontier.pop()
        if p in seen:
            continue
        seen.add(p)
        total += kids.get(p, (0, 0.0))[1]
        frontier.extend(c for c, (pp, _) in kids.items() if pp == p)
    return total


def thread_cpu_seconds():
    """CPU seconds of each thread of this process, summed by thread name with digits dropped
    (reader-0, reader-1 -> reader-): who spends the cores."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            name = head.split("(", 1)[1].rstrip("0123456789")
            parts = rest.split()
            out[name] = out.get(name, 0.0) + (int(parts[11]) + int(parts[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return out


class GpuSampler:
    def __init__(self):
        self.samples, self.proc = [], None

    def __enter__(self):
        self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits", "-lms", "100"],
                                     stdout=subprocess.PIPE, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def __exit__(self, *a):
        self.proc.terminate()
        self.proc.wait()

    def mean(self):
        return float(np.mean(self.samples)) if self.samples else float("nan")


def model_step():
    import timm
    m = timm.create_model("resnet18", num_classes=80).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def step(images):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(images.to(memory_format=torch.channels_last))
            loss = out.float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def measure(name, batches, step, seconds, warmup=3.0):
    """Runs `step` on batches until `seconds` after `warmup`; returns the JSON row."""
    n, t0, c0, started = 0, None, None, time.time()
    sampler = None
    trace = os.environ.get("BENCH_TRACE")
    if os.environ.get("BENCH_SIDE_STREAM"):
        torch.cuda.set_stream(torch.cuda.Stream())
    k = 0
    for images in batches:
        step(images)
        now = time.time()
        k += 1
        if trace and k % 10 == 0:
            print(f"trace: {k} batches at {now - started:.1f} s", file=sys.stderr, flush=True)
        if t0 is None and now - started >= warmup:
            torch.cuda.synchronize()
            t0, c0, n = time.time(), tree_cpu_seconds(), 0
            th0 = thread_cpu_seconds()
            sampler = GpuSampler().__enter__()
            continue
        if t0 is not None:
            n += images.shape[0]
            if now - t0 >= seconds:
                break
    torch.cuda.synchronize()
    wall = time.time() - t0
    cpu = tree_cpu_seconds() - c0
    th1 = thread_cpu_seconds()
    by_thread = sorted(((k, (v - th0.get(k, 0.0)) / wall) for k, v in th1.items()), key=lambda kv: -kv[1])
    sampler.__exit__()
    row = {"feed": name, "images_per_s": round(n / wall, 1), "gpu_util_pct": round(sampler.mean(), 1),
           "cpu_cores": round(cpu / wall, 2), "seconds": round(wall, 1), "images": n,
           "cores_by_thread": {k: round(v, 2) for k, v in by_thread[:8] if v >= 0.01}}
    print(json.dumps(row), flush=True)
    return row


def dsprep_batches(shards, **kw):
    if os.environ.get("BENCH_DECODERS"):
        kw.setdefault("decoders", os.environ["BENCH_DECODERS"])
    ld = dsprep.Loader(shards, batch_size=B, size=S, resize="letterbox", flip=0.5, **kw)
    while True:
        for b in ld:
            yield b["images"]


def dali_batches(shards, threads=16):
    """DALI 2.4 doing the same work: TFRecord reader over our shards and .idx files (global
    shuffle is not available: random_shuffle fills a buffer), mixed decoder on the hardware
    engines (hw_decoder_load=1.0), letterbox (resize_longer + centred pad to 640 with 114),
    random flip of images and boxes, normalise to float16 CHW; boxes and labels padded per batch.
    Through DALIGenericIterator, as a PyTorch user runs it."""
    import glob
    from nvidia.dali import fn, pipeline_def, types
    import nvidia.dali.tfrecord as tfrec
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    files = sorted(glob.glob(os.path.join(shards, "*.tfrecord")))
    idx = [f[: -len(".tfrecord")] + ".idx" for f in files]

    @pipeline_def(batch_size=B, num_threads=threads, device_id=0, prefetch_queue_depth=2)
    def pipe():
        r = fn.readers.tfrecord(path=files, index_path=idx, random_shuffle=True, initial_fill=1024,
                                name="Reader", features={
                                    "image/encoded": tfrec.FixedLenFeature((), tfrec.string, ""),
                                    "image/object/bbox/xmin": tfrec.VarLenFeature(tfrec.float32, 0.0),
                                    "image/object/bbox/ymin": tfrec.VarLenFeature(tfrec.float32, 0.0),
                                    "image/object/bbox/xmax": tfrec.VarLenFeature(tfrec.float32, 0.0),
                                    "image/object/bbox/ymax": tfrec.VarLenFeature(tfrec.float32, 0.0),
                                    "image/object/class/label": tfrec.VarLenFeature(tfrec.int64, -1)})
        img = fn.decoders.image(r["image/encoded"], device="mixed", output_type=types.RGB,
                                hw_decoder_load=1.0)
        img = fn.resize(img, resize_longer=S, interp_type=types.INTERP_LINEAR, antialias=True)
        flip = fn.random.coin_flip(probability=0.5)
        img = fn.crop_mirror_normalize(img, crop=(S, S), crop_pos_x=0.5, crop_pos_y=0.5,
                                       out_of_bounds_policy="pad", fill_values=114 / 255,
                                       mirror=flip, mean=[0.0] * 3, std=[255.0] * 3,
                                       dtype=types.FLOAT16, output_layout="CHW")
        boxes = fn.stack(r["image/object/bbox/xmin"], r["image/object/bbox/ymin"],
                         r["image/object/bbox/xmax"], r["image/object/bbox/ymax"], axis=1)
        boxes = fn.bb_flip(boxes, ltrb=True, horizontal=flip)
        return img, fn.pad(boxes.gpu(), fill_value=0.0), fn.pad(r["image/object/class/label"].gpu(), fill_value=-1)

    p = pipe()
    p.build()
    it = DALIGenericIterator([p], ["images", "boxes", "labels"], reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.DROP, auto_reset=True)
    while True:
        for b in it:
            yield b[0]["images"]


def synthetic_batches():
    x = torch.randn(B, 3, S, S, device="cuda", dtype=torch.float16)
    while True:
        yield x


class CocoLetterbox(torch.utils.data.Dataset):
    def __init__(self, coco):
        ann = json.load(open(os.path.join(coco, "annotations", "instances_train2017.json")))
        self.files = [os.path.join(coco, "train2017", im["file_name"]) for im in ann["images"]]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image
        im = Image.open(self.files[i]).convert("RGB")
        w, h = im.size
        r = min(S / w, S / h)
        nw, nh = round(w * r), round(h * r)
        im = im.resize((nw, nh), Image.BILINEAR)
        canvas = Image.new("RGB", (S, S), (114, 114, 114))
        canvas.paste(im, ((S - nw) // 2, (S - nh) // 2))
        if np.random.rand() < 0.5:
            canvas = canvas.transpose(Image.FLIP_LEFT_RIGHT)
        a = torch.from_numpy(np.asarray(canvas)).permute(2, 0, 1)
        return a


def torch_batches(coco):
    dl = torch.utils.data.DataLoader(CocoLetterbox(coco), batch_size=B, shuffle=True, num_workers=16,
                                     pin_memory=True, drop_last=True, persistent_workers=True,
                                     prefetch_factor=4)
    while True:
        for x in dl:
            yield x.cuda(non_blocking=True).half().div_(255)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shards")
    ap.add_argument("--coco")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--only", default="synthetic,dsprep,torch,alone")
    a = ap.parse_args()
    rows = []
    feeds = a.only.split(",")
    step = model_step() if set(feeds) - {"alone", "dali_alone"} else None
    for f in feeds:
        if f == "synthetic":
            rows.append(measure("synthetic (upper bound)", synthetic_batches(), step, a.seconds))
        elif f == "dsprep":
            rows.append(measure("dsprep.Loader", dsprep_batches(a.shards), step, a.seconds))
        elif f == "dali":
            rows.append(measure("DALI 2.4 DALIGenericIterator (hw_decoder_load=1.0)", dali_batches(a.shards), step, a.seconds))
        elif f == "dali_alone":
            rows.append(measure("DALI alone (no model)", dali_batches(a.shards), lambda x: None, a.seconds))
        elif f == "torch":
            rows.append(measure("DataLoader 16 workers (Pillow)", torch_batches(a.coco), step, a.seconds))
        elif f == "alone":
            rows.append(measure("dsprep.Loader alone (no model)", dsprep_batches(a.shards),
                                lambda x: None, a.seconds))
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
