"""DALI's fn.readers.tfrecord reads dsprep's shards with dsprep's .idx files (CPU pipeline,
device_id=None) and sees the same records as TensorFlow."""

import numpy as np
import pytest

pytestmark = pytest.mark.requires("nvidia.dali", "tensorflow", "numpy")


def dali_read(paths, index_paths, with_objects=True):
    """All records of the shards, in order, through a CPU DALI pipeline (batch 1, no shuffle):
    [(source_id, decoded HWC uint8, height, width, xmin list, label list)]."""
    from nvidia.dali import fn, pipeline_def, types
    import nvidia.dali.tfrecord as tfrec

    features = {
        "image/encoded": tfrec.FixedLenFeature((), tfrec.string, ""),
        "image/source_id": tfrec.FixedLenFeature((), tfrec.string, ""),
        "image/height": tfrec.FixedLenFeature([1], tfrec.int64, -1),
        "image/width": tfrec.FixedLenFeature([1], tfrec.int64, -1),
    }
    if with_objects:
        features["image/object/bbox/xmin"] = tfrec.VarLenFeature(tfrec.float32, -1.0)
        features["image/object/class/label"] = tfrec.VarLenFeature(tfrec.int64, -1)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)
    def pipe():
        f = fn.readers.tfrecord(path=[str(p) for p in paths],
                                index_path=[str(p) for p in index_paths],
                                features=features, random_shuffle=False, name="Reader")
        image = fn.decoders.image(f["image/encoded"], device="cpu", output_type=types.RGB)
        outs = [image, f["image/source_id"], f["image/height"], f["image/width"]]
        if with_objects:
            outs += [f["image/object/bbox/xmin"], f["image/object/class/label"]]
        return tuple(outs)

    p = pipe()
    p.build()
    n = p.epoch_size("Reader")
    out = []
    for _ in range(n):
        batch = [np.array(t[0]) for t in p.run()]
        sid = batch[1].tobytes().decode("utf-8")
        row = [sid, batch[0], int(batch[2][0]), int(batch[3][0])]
        if with_objects:
            row += [batch[4].tolist(), batch[5].tolist()]
        out.append(tuple(row))
    return out


def test_dali_reads_every_record_like_tensorflow(tfrecord_out, tf_records, coco_splits):
    for name in coco_splits:
        got = dali_read(tfrecord_out.shard_paths(name), tfrecord_out.index_paths(name))
        want = tf_records[name]
        assert len(got) == len(want) == tfrecord_out.split(name)["records"]
        for (sid, img, h, w, xmin, label), rec in zip(got, want):
            assert sid == rec["image/source_id"].decode("utf-8")
            assert (h, w) == (rec["image/height"], rec["image/width"]), sid
            assert img.shape == (h, w, 3), sid
            # Two libjpeg-turbo builds with different IDCTs: a level or two apart at most.
            diff = float(np.abs(img.astype(np.int16) - rec["decoded"].astype(np.int16)).mean())
            assert diff < 2.0, f"{sid}: DALI vs TF mean pixel difference {diff:.2f}"
            want_xmin = rec["image/object/bbox/xmin"]
            want_label = rec["image/object/class/label"]
            if want_xmin:
                np.testing.assert_array_equal(np.float32(xmin), np.float32(want_xmin), sid)
                assert label == want_label, sid
            else:
                # Images without boxes: empty lists (DALI may substitute its default value).
                assert xmin in ([], [-1.0]) and label in ([], [-1]), (sid, xmin, label)
