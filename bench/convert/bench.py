#!/usr/bin/env python3
"""Time `cp -r`, `dsprep convert` and the TF-OD-API-style converter on one COCO folder, page
cache warm, runs interleaved (cp, dsprep, tf, cp, ...) so that drift hits all three alike.

Each run writes a new output folder (nothing is deleted until all runs are done) after the
input is read once more (page cache warm) and `sync` (so the last run's write-back is not
billed to this one); then `/usr/bin/time -v CMD`. On this VM the same `cp -r` of 333 MB took
0.34 s to 3.5 s from one run to the next (almost all system time: block allocation and page
cache work in the kernel), so report the spread, not just the median. Wall time from a monotonic clock around the process;
peak RSS from time -v (for the TF converter that is its largest single process: the parent or
one pool worker). Throughput = input bytes (images + annotation file) / median wall time.

Usage: bench.py --coco DIR --out DIR --dsprep BIN --python PY [--runs 3] [--json FILE]
       bench.py --rss-only --coco DIR ... (dsprep peak RSS only, one run)
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def tree_stats(root):
    files, size = 0, 0
    for d, _, names in os.walk(root):
        for n in names:
            files += 1
            size += os.path.getsize(os.path.join(d, n))
    return files, size


def warm(root):
    """Read every file once so the page cache holds the input (the 'warm' in warm cache)."""
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                while f.read(1 << 20):
                    pass


def timed(cmd, out_dir):
    assert not os.path.exists(out_dir), out_dir
    subprocess.run(["sync"], check=True)
    tfile = out_dir.rstrip("/") + ".time"
    t0 = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", tfile, *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    text = open(tfile).read()
    os.remove(tfile)
    if proc.returncode not in (0, 1):  # dsprep exits 1 when it skipped inputs
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return {"wall_s": wall, "rss_mb": rss_kb / 1024, "rc": proc.returncode}


def output_bytes(out_dir):
    return tree_stats(out_dir)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coco", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dsprep", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--split", default="train2017")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="cp,cp_sync,dsprep,tf")
    ap.add_argument("--json")
    a = ap.parse_args()

    coco = os.path.abspath(a.coco)
    files, in_bytes = tree_stats(coco)
    images = len(os.listdir(os.path.join(coco, a.split)))
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)

    def commands(out):
        return {
            "cp": ["cp", "-r", coco, out],
            # The copy with its data on disk too (`sync -f`: the file system holding it), for
            # comparison with `dsprep convert --fsync`.
            "cp_sync": ["sh", "-c", f'cp -r "{coco}" "{out}" && sync -f "{out}"'],
            "dsprep": [a.dsprep, "convert", coco, out, "--quiet"],
            "tf": [a.python, os.path.join(HERE, "tf_converter.py"), coco, out,
                   "--split", a.split, "--shards", "16"],
        }

    tools = a.tools.split(",")
    warm(coco)
    load_before = os.getloadavg()
    runs = {t: [] for t in tools}
    for i in range(a.runs):
        for t in tools:
            out = os.path.join(a.out, f"{t}-{i + 1}")
            warm(coco)  # again before every run: the kernel may have reclaimed some of it
            r = timed(commands(out)[t], out)
            r["out_bytes"] = output_bytes(out)
            runs[t].append(r)
            print(f"run {i + 1} {t:7s} {r['wall_s']:7.2f}s  peak RSS {r['rss_mb']:7.1f} MB",
                  flush=True)
    result = {"coco": coco, "images": images, "files": files, "input_bytes": in_bytes,
              "nproc": os.cpu_count(),
              # Other work on the machine skews every number: recorded, not hidden.
              "loadavg_before": [round(x, 2) for x in load_before],
              "loadavg_after": [round(x, 2) for x in os.getloadavg()],
              "commands": {t: " ".join(commands(os.path.join(a.out, t + "-N"))[t])
                           for t in tools},
              "tools": {}}
    for t in tools:
        wall = statistics.median(r["wall_s"] for r in runs[t])
        result["tools"][t] = {
            "runs_s": [round(r["wall_s"], 3) for r in runs[t]],
            "median_s": round(wall, 3),
            "min_s": round(min(r["wall_s"] for r in runs[t]), 3),
            "mb_per_s": round(in_bytes / 1e6 / wall, 1),
            "images_per_s": round(images / wall, 1),
            "peak_rss_mb": round(max(r["rss_mb"] for r in runs[t]), 1),
            "out_bytes": runs[t][-1]["out_bytes"],
        }
    shutil.rmtree(a.out, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
