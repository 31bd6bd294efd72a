"""py-lmdb opens dsprep's LMDB shards the way training code does, and finds the same serialized
tf.train.Example values, in the same order, as the TFRecord conversion."""

import pytest

pytestmark = pytest.mark.requires("lmdb", "tensorflow", "xxhash")


def lmdb_entries(path):
    """(records [(key, value)] in cursor order, metadata {key: value}) of one LMDB shard.
    Metadata entries are the `__name__` keys."""
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    try:
        records, meta = [], {}
        with env.begin(buffers=False) as txn:
            for key, value in txn.cursor():
                if key.startswith(b"__") and key.endswith(b"__"):
                    meta[key] = value
                else:
                    records.append((key, value))
        return records, meta
    finally:
        env.close()


def test_lmdb_values_equal_tfrecord_records(lmdb_out, tfrecord_out, tf_records, coco_splits):
    import tensorflow as tf

    for name in coco_splits:
        # Shards whose images were all skipped are not written.
        shards = [sh for sh in lmdb_out.split(name)["shards"] if sh["records"]]
        tf_shards = [sh for sh in tfrecord_out.split(name)["shards"] if sh["records"]]
        assert len(shards) == len(tf_shards), "same options must give the same shard count"
        for i, sh in enumerate(shards):
            path = lmdb_out.out / sh["file"]
            assert path.is_dir(), f"{path}: an LMDB shard is a folder (subdir=True)"
            records, meta = lmdb_entries(path)
            assert b"__len__" in meta, f"{sh['file']}: no __len__ entry: {sorted(meta)}"
            assert int(meta[b"__len__"].decode("ascii")) == len(records) == sh["records"]
            # Keys: the record number in the shard as 10 ASCII digits (byte order = numeric
            # order = write order); metadata documented in src/shard/lmdb.rs and the README.
            keys = [k for k, _ in records]
            assert keys == [b"%010d" % n for n in range(len(records))], sh["file"]
            assert meta.get(b"__format__") == b"tf.train.Example"
            want_range = b"%s-%s" % (keys[0], keys[-1]) if keys else b""
            assert meta.get(b"__keys__") == want_range, meta.get(b"__keys__")
            want = [rec["raw"] for rec in tf_records[name] if rec["shard"] == i]
            got = [v for _, v in records]
            assert len(got) == len(want), f"{sh['file']}: {len(got)} values vs {len(want)} TF"
            for j, (g, w) in enumerate(zip(got, want)):
                assert g == w, f"{sh['file']} record {j}: LMDB value differs from the TFRecord"
                ex = tf.train.Example.FromString(g)
                assert "image/encoded" in ex.features.feature
            import xxhash

            data = (path / "data.mdb").read_bytes()
            assert sh["bytes"] == len(data)
            assert sh["checksum"] == "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


def test_lmdb_manifest_counts_equal_tfrecord(lmdb_out, tfrecord_out, coco_splits):
    for name in coco_splits:
        a, b = lmdb_out.split(name), tfrecord_out.split(name)
        assert a["counts"] == b["counts"]
        assert lmdb_out.skipped(name) == tfrecord_out.skipped(name)
    assert lmdb_out.manifest["options"]["format"] == "lmdb"
