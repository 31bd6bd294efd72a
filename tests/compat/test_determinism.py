"""Same input and options → byte-identical output whatever the thread count."""

import pytest

from compat_util import convert

pytestmark = pytest.mark.requires("PIL", "numpy")


def files_of(out):
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_convert_is_byte_identical_for_any_thread_count(dsprep_bin, source, tmp_path):
    coco_root, extra = source
    one = convert(dsprep_bin, coco_root, tmp_path / "j1", "--shards", "3", "-j1", *extra)
    two = convert(dsprep_bin, coco_root, tmp_path / "j2", "--shards", "3", "-j2", *extra)
    a, b = files_of(one.out), files_of(two.out)
    assert sorted(a) == sorted(b)
    assert any(name.endswith(".tfrecord") for name in a)
    differing = [name for name in a if a[name] != b[name]]
    assert not differing, f"differ between -j1 and -j2: {differing}"


def test_default_sharding_is_deterministic_too(dsprep_bin, source, tmp_path):
    coco_root, extra = source
    one = convert(dsprep_bin, coco_root, tmp_path / "j1", "-j1", *extra)
    two = convert(dsprep_bin, coco_root, tmp_path / "j2", "-j2", *extra)
    a, b = files_of(one.out), files_of(two.out)
    assert a == b, [n for n in set(a) | set(b) if a.get(n) != b.get(n)]
