#!/usr/bin/env bash
# Moves the DALI tar parts carried so far into /tmp/dali (kept while the machine stays warm).
mkdir -p /tmp/dali && for p in dali-parts/part-*; do [ -f "$p" ] && cp "$p" /tmp/dali/; done; ls -la /tmp/dali
