"""`dsprep index` on TFRecords written by TensorFlow itself: the .idx equals the one computed
from the framing, and DALI reads the file with it."""

import numpy as np
import pytest

from compat_util import expected_index, run_dsprep

pytestmark = pytest.mark.requires("tensorflow", "nvidia.dali", "numpy")


def write_tf_file(path, sizes):
    """A TFRecord written by tf.io.TFRecordWriter: Examples with a payload of each size and an
    int64 id, so record boundaries fall at awkward offsets."""
    import tensorflow as tf

    rng = np.random.default_rng(len(sizes))
    with tf.io.TFRecordWriter(str(path)) as w:
        for i, n in enumerate(sizes):
            feats = {
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                "blob": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[rng.integers(0, 256, n, dtype=np.uint8).tobytes()])),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feats))
                    .SerializeToString())


SIZES = [0, 1, 127, 128, 300, 70_000, 5, 16_384, 3]


def test_index_of_tensorflow_written_file(dsprep_bin, tmp_path):
    a, b = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    write_tf_file(a, SIZES)
    write_tf_file(b, SIZES[::-1] * 3)
    run_dsprep(dsprep_bin, "index", a, b)
    assert (tmp_path / "a.idx").read_text(encoding="ascii") == expected_index(a)
    assert (tmp_path / "b.idx").read_text(encoding="ascii") == expected_index(b)
    # --out-dir writes the same files elsewhere.
    other = tmp_path / "idx"
    other.mkdir()
    run_dsprep(dsprep_bin, "index", "--out-dir", other, a)
    assert (other / "a.idx").read_text(encoding="ascii") == expected_index(a)


def test_dali_reads_with_dsprep_index(dsprep_bin, tmp_path):
    from nvidia.dali import fn, pipeline_def
    import nvidia.dali.tfrecord as tfrec

    paths = [tmp_path / "x.tfrecord", tmp_path / "y.tfrecord"]
    write_tf_file(paths[0], SIZES)
    write_tf_file(paths[1], [9, 99, 999])
    run_dsprep(dsprep_bin, "index", *paths)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)
    def pipe():
        f = fn.readers.tfrecord(
            path=[str(p) for p in paths], index_path=[str(p.with_suffix(".idx")) for p in paths],
            features={"id": tfrec.FixedLenFeature([1], tfrec.int64, -1),
                      "blob": tfrec.FixedLenFeature((), tfrec.string, "")},
            random_shuffle=False, name="Reader")
        return f["id"], f["blob"]

    p = pipe()
    p.build()
    n = p.epoch_size("Reader")
    assert n == len(SIZES) + 3
    seen = []
    for _ in range(n):
        ids, blob = p.run()
        seen.append((int(np.array(ids[0])[0]), np.array(blob[0]).size))
    assert seen == list(enumerate(SIZES)) + [(0, 9), (1, 99), (2, 999)]
