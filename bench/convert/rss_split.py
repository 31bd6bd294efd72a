#!/usr/bin/env python3
"""Peak anonymous vs file-backed RSS of a command (sampled from /proc/PID/status every 20 ms).

Why: dsprep mmaps the annotation file, and mapped file pages count in the `Maximum resident set
size` that time -v reports although the kernel can drop them at any time; this separates them.
Usage: rss_split.py CMD...   → prints one JSON line
"""
import json
import re
import subprocess
import sys
import time

proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
t0 = time.monotonic()
while proc.poll() is None:
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            status = f.read()
        for key in peak:
            m = re.search(key + r":\s+(\d+) kB", status)
            if m:
                peak[key] = max(peak[key], int(m.group(1)))
    except OSError:
        pass
    time.sleep(0.02)
print(json.dumps({"cmd": " ".join(sys.argv[1:]), "rc": proc.returncode,
                  "wall_s": round(time.monotonic() - t0, 2),
                  **{k + "_mb": round(v / 1024, 1) for k, v in peak.items()}}))
