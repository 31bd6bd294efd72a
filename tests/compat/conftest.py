"""Shared fixtures for the compat tests: build dsprep, convert a COCO set once per session, and
read the result with independent (pure Python) helpers.

Why these tests exist: dsprep writes its formats by hand (protobuf, TFRecord framing, index,
LMDB). Unit tests check it against our own reading of the specs; these check it against the
readers users actually run (TensorFlow, DALI, py-lmdb), which is the only proof that counts.

Environment:
  CI=true               missing Python packages FAIL instead of skip (see `requires` marker).
  DSPREP_BIN            use this binary instead of building target/release/dsprep.
  DSPREP_COMPAT_COCO    convert this COCO folder instead of fixtures/coco.
"""

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compat_util import IN_CI, REPO, convert, discover_splits, tf_read_split

# Shard count used for the main conversions: several shards per split, so that shard order,
# index pairing and per-shard LMDB comparisons are exercised even on a tiny fixture.
SHARDS = 3


# ----------------------------------------------------------------------------- markers / session


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*modules): see pytest.ini")


def _missing_modules(names):
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or a broken install raising something else
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    return missing


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        missing = _missing_modules(mark.args)
        if missing:
            msg = "missing Python packages: " + "; ".join(missing)
            msg += " -- install tests/compat/requirements.txt (tests/compat/venv.sh does)"
            if IN_CI:
                pytest.fail("CI=true: " + msg, pytrace=False)
            pytest.skip(msg)


def pytest_sessionfinish(session, exitstatus):
    # pytest exits 5 when it collected nothing; a CI run that tested nothing must not pass
    # (and must not look like "no tests" either): turn it into a plain failure.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("\nERROR: tests/compat collected no tests", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config):
    return [f"dsprep compat: CI={IN_CI} repo={REPO}"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def dsprep_bin():
    env = os.environ.get("DSPREP_BIN")
    if env:
        return Path(env).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    binary = target / "release" / "dsprep"
    if shutil.which("cargo"):
        # Up to date after `cargo test --release`; builds it when the tests run alone.
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "dsprep"],
                       cwd=REPO, check=True)
    assert binary.is_file(), f"{binary} not found: run `cargo build --release`"
    return binary


# The committed fixtures converted by every compat test, with the options each needs:
#   coco      every odd-but-convertible case (EXIF, CMYK, PNG-named-.jpg, gaps, clipping, ...)
#   coco-bad  missing/empty/truncated/text/corrupt files; --decode-check so that the corrupt one
#             is skipped instead of stored (the cheap default check reads headers only)
SOURCES = {"coco": (), "coco-bad": ("--decode-check",)}


@pytest.fixture(scope="session", params=sorted(SOURCES))
def source(request):
    """(COCO folder, extra convert options). DSPREP_COMPAT_COCO replaces the fixtures."""
    env = os.environ.get("DSPREP_COMPAT_COCO")
    if env:
        if request.param != "coco":
            pytest.skip("DSPREP_COMPAT_COCO set: only that folder is converted")
        return Path(env).resolve(), ()
    root = REPO / "fixtures" / request.param
    assert (root / "annotations").is_dir(), f"{root}: committed fixture missing"
    return root, SOURCES[request.param]


@pytest.fixture(scope="session")
def coco_root(source):
    return source[0]


@pytest.fixture(scope="session")
def coco_splits(coco_root):
    splits = discover_splits(coco_root)
    assert splits, f"{coco_root}: no annotations/instances_*.json with an image folder"
    return {s.name: s for s in splits}


@pytest.fixture(scope="session")
def tfrecord_out(dsprep_bin, source, coco_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "tfrecord"
    return convert(dsprep_bin, coco_root, out, "--shards", SHARDS, *source[1])


@pytest.fixture(scope="session")
def lmdb_out(dsprep_bin, source, coco_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "lmdb"
    return convert(dsprep_bin, coco_root, out, "--format", "lmdb", "--shards", SHARDS,
                   *source[1])


@pytest.fixture(scope="session")
def tf_records(tfrecord_out, coco_splits):
    """{split: [record dict]} read by TensorFlow from the TFRecord conversion."""
    missing = _missing_modules(["tensorflow"])
    if missing:
        (pytest.fail if IN_CI else pytest.skip)(f"tensorflow not importable: {missing}")
    return {name: tf_read_split(tfrecord_out.shard_paths(name)) for name in coco_splits}
