#!/usr/bin/env bash
# Set-up command 1: build dsprep and convert the embedded fixture (fixtures/coco → out/coco).
# The only system packages the build needs beyond Rust + gcc are cmake and nasm (they build the
# bundled libjpeg-turbo that `presize` uses); they are installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends cmake nasm
fi
cargo build --release
./target/release/dsprep convert fixtures/coco out/coco --overwrite
./target/release/dsprep verify out/coco --decode
