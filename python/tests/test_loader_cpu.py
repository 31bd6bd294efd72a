"""The loader on the CPU with NumPy output (what CI runs: no GPU, no PyTorch)."""

import numpy as np
import pytest

import dsprep
from conftest import read_records, record_info

S = 64


def loader(path, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("output", "numpy")
    kw.setdefault("batch_size", 4)
    kw.setdefault("size", S)
    kw.setdefault("threads", 2)
    return dsprep.Loader(str(path), **kw)


def expected_geometry(w, h, mode):
    if mode == "stretch":
        return S, S, 0, 0
    r = min(S / w, S / h)
    nw, nh = min(max(round(w * r), 1), S), min(max(round(h * r), 1), S)
    return nw, nh, (S - nw) // 2, (S - nh) // 2


def expected_boxes(info, mode, flip):
    nw, nh, px, py = expected_geometry(info["w"], info["h"], mode)
    out = []
    for x0, y0, x1, y1 in info["boxes"]:
        b = [np.float64(np.float32(x0)) * nw + px, np.float64(np.float32(y0)) * nh + py,
             np.float64(np.float32(x1)) * nw + px, np.float64(np.float32(y1)) * nh + py]
        if flip:
            b = [S - b[2], b[1], S - b[0], b[3]]
        out.append(b)
    return np.array(out, dtype=np.float32).reshape(-1, 4)


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_boxes_match_an_independent_computation(shards, mode):
    recs = [record_info(r) for r in read_records(shards["tfrecord"])]
    ld = loader(shards["tfrecord"], resize=mode, shuffle=False, drop_last=False, flip=0.5, seed=3)
    assert len(ld) == 7  # 26 records / 4, rounded up
    seen = 0
    for k, b in enumerate(ld):
        assert b["images"].shape == (4, 3, S, S) and b["images"].dtype == np.float16
        for i in range(4):
            slot = k * 4 + i
            info = recs[slot % len(recs)]
            assert b["is_pad"][i] == (slot >= len(recs))
            assert b["image_ids"][i] == info["id"]
            assert tuple(b["orig_size"][i]) == (info["w"], info["h"])
            n = len(info["boxes"])
            assert b["num_boxes"][i] == n
            want = expected_boxes(info, mode, bool(b["flipped"][i]))
            np.testing.assert_array_equal(b["boxes"][i, :n], want)
            assert (b["boxes"][i, n:] == 0).all() and (b["labels"][i, n:] == -1).all()
            np.testing.assert_array_equal(b["labels"][i, :n], info["labels"])
            np.testing.assert_array_equal(b["is_crowd"][i, :n], np.array(info["crowd"], bool))
            nw, nh, px, py = expected_geometry(info["w"], info["h"], mode)
            np.testing.assert_allclose(b["scale"][i], [nw / info["w"], nh / info["h"]], rtol=1e-6)
            assert tuple(b["pad"][i]) == (px, py)
            seen += 1
    assert seen == 28
    flips = [bool(f) for b in loader(shards["tfrecord"], flip=0.5, shuffle=False) for f in b["flipped"]]
    assert 0 < sum(flips) < len(flips)


def test_flip_mirrors_the_canvas_and_pads_with_114(shards):
    a = list(loader(shards["tfrecord"], shuffle=False, flip=0.0, dtype="float32"))
    b = list(loader(shards["tfrecord"], shuffle=False, flip=1.0, dtype="float32"))
    for x, y in zip(a, b):
        assert y["flipped"].all() and not x["flipped"].any()
        np.testing.assert_array_equal(y["images"], x["images"][..., ::-1])
        n = x["boxes"].shape[1]
        if n:
            np.testing.assert_allclose(y["boxes"][..., 0], np.where(x["num_boxes"][:, None] > np.arange(n), S - x["boxes"][..., 2], 0), atol=1e-5)
    # A wide image: letterboxed with rows of padding above and below.
    first = a[0]
    i = int(np.argmax(first["pad"][:, 1]))
    py = int(first["pad"][i, 1])
    assert py >= 8, first["pad"]
    pad = np.float32(114) * (np.float32(1) / np.float32(255))
    assert np.allclose(first["images"][i, :, :py, :], pad, atol=1e-6)
    assert np.allclose(first["images"][i, :, S - py:, :], pad, atol=1e-6)
    assert not np.allclose(first["images"][i, :, S // 2, :], pad, atol=1e-3)


def test_hsv_jitter_is_seeded_keeps_boxes_and_greys_stay_grey(shards):
    plain = list(loader(shards["tfrecord"], shuffle=False, dtype="float32"))
    a = list(loader(shards["tfrecord"], shuffle=False, dtype="float32", hsv=(0.015, 0.7, 0.4), seed=5))
    b = list(loader(shards["tfrecord"], shuffle=False, dtype="float32", hsv=(0.015, 0.7, 0.4), seed=5))
    c = list(loader(shards["tfrecord"], shuffle=False, dtype="float32", hsv=(0.015, 0.7, 0.4), seed=6))
    changed = 0
    for p, x, y, z in zip(plain, a, b, c):
        np.testing.assert_array_equal(x["images"], y["images"])  # same seed, same jitter
        assert not np.array_equal(x["images"], z["images"])
        for k in ("boxes", "labels", "num_boxes", "image_ids", "scale", "pad"):
            np.testing.assert_array_equal(x[k], p[k], err_msg=k)
        changed += int(not np.allclose(x["images"], p["images"], atol=1e-3))
        # Letterbox padding is grey: with no hue and no saturation it stays grey (the value
        # gain scales it), as in YOLO, which jitters the whole letterboxed canvas.
        for i in range(x["images"].shape[0]):
            py = int(p["pad"][i, 1])
            if py > 0:
                top = x["images"][i, :, :py, :]
                assert np.allclose(top[0], top[1], atol=1e-5) and np.allclose(top[1], top[2], atol=1e-5)
    assert changed == len(plain)


def test_the_pipeline_flows_across_epochs_without_changing_a_batch(shards):
    """The pass goes on into the next epoch while the loop is between epochs; whatever the loop
    does next (the next epoch, a repeated or a far epoch, breaking off mid-epoch), it gets what
    a fresh loader at that position gives, images included."""
    def batches(ld, epoch=None, stop=None):
        if epoch is not None:
            ld.set_epoch(epoch)
        out = []
        for b in ld:
            out.append((tuple(b["image_ids"]), tuple(b["flipped"]), b["images"].copy()))
            if stop is not None and len(out) == stop:
                break
        return out

    def fresh(epoch):
        return batches(loader(shards["tfrecord"], seed=3, flip=0.5), epoch)

    def same(a, b):
        assert len(a) == len(b) and len(a) > 0
        for x, y in zip(a, b):
            assert x[:2] == y[:2]
            np.testing.assert_array_equal(x[2], y[2])

    ld = loader(shards["tfrecord"], seed=3, flip=0.5)
    same(batches(ld, 0), fresh(0))
    same(batches(ld), fresh(1))      # no set_epoch: the next epoch
    same(batches(ld, 2), fresh(2))   # set_epoch to the next one
    same(batches(ld, 2), fresh(2))   # the same epoch again
    same(batches(ld, 9), fresh(9))   # a far epoch
    part = batches(ld, 4, stop=2)    # broken off mid-epoch, then the next epoch
    same(part, fresh(4)[:2])
    same(batches(ld, 5), fresh(5))


def test_mean_std_and_bgr(shards):
    a = next(iter(loader(shards["tfrecord"], shuffle=False, dtype="float32")))
    b = next(iter(loader(shards["tfrecord"], shuffle=False, dtype="float32", bgr=True,
                         mean=(10, 20, 30), std=(2, 4, 8))))
    raw = a["images"] * 255
    want = np.stack([(raw[:, 2] - 30) / 8, (raw[:, 1] - 20) / 4, (raw[:, 0] - 10) / 2], 1)
    np.testing.assert_allclose(b["images"], want, atol=2e-3)


def test_shuffle_is_deterministic_and_epochs_differ(shards):
    def ids(ld, epoch):
        ld.set_epoch(epoch)
        return [tuple(b["image_ids"]) + tuple(b["flipped"]) for b in ld]
    a, b = loader(shards["tfrecord"], seed=5, flip=0.5), loader(shards["tfrecord"], seed=5, flip=0.5)
    assert ids(a, 0) == ids(b, 0)
    assert ids(a, 1) == ids(b, 1)
    assert ids(a, 0) != ids(a, 1)
    assert ids(loader(shards["tfrecord"], seed=6), 0) != ids(a, 0)
    # Without set_epoch, the next pass runs the next epoch.
    c = loader(shards["tfrecord"], seed=5, flip=0.5)
    first, second = [tuple(x["image_ids"]) + tuple(x["flipped"]) for x in c], [tuple(x["image_ids"]) + tuple(x["flipped"]) for x in c]
    assert first == ids(a, 0) and second == ids(a, 1)


def test_lmdb_gives_the_same_batches(shards):
    a = list(loader(shards["tfrecord"], seed=1, flip=0.5))
    b = list(loader(shards["lmdb"], seed=1, flip=0.5))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        for k in ("image_ids", "boxes", "flipped", "images"):
            np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_are_disjoint_or_cover_with_padding(shards, world):
    total = len(read_records(shards["tfrecord"]))
    seen, lens = [], set()
    for r in range(world):
        ld = loader(shards["tfrecord"], rank=r, world_size=world, seed=2)
        lens.add(len(ld))
        for b in ld:
            assert not b["is_pad"].any()
            seen.extend(b["image_ids"].tolist())
    assert len(lens) == 1 and len(seen) == len(set(seen))
    assert total - len(seen) < world * 4
    seen, pads, lens = set(), 0, set()
    for r in range(world):
        ld = loader(shards["tfrecord"], rank=r, world_size=world, seed=2, drop_last=False)
        lens.add(len(ld))
        for b in ld:
            seen.update(b["image_ids"][~b["is_pad"]].tolist())
            pads += int(b["is_pad"].sum())
    assert len(lens) == 1 and len(seen) == total
    assert pads == lens.pop() * world * 4 - total


def test_rank_from_torchrun_and_slurm_environment(shards, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "3")
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert loader(shards["tfrecord"]).rank == (2, 3, 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert loader(shards["tfrecord"]).rank == (1, 2, 0)
    assert loader(shards["tfrecord"], rank=0, world_size=1).rank == (0, 1, 0)


def test_resume_continues_exactly(shards):
    full = loader(shards["tfrecord"], seed=9, flip=0.5)
    full.set_epoch(4)
    want = [(tuple(b["image_ids"]), tuple(b["flipped"]), b["images"].copy()) for b in full]
    ld = loader(shards["tfrecord"], seed=9, flip=0.5)
    ld.set_epoch(4)
    it = iter(ld)
    got = [next(it) for _ in range(2)]
    state = ld.state_dict()
    assert state["epoch"] == 4 and state["batch"] == 2
    del it, ld
    resumed = loader(shards["tfrecord"], seed=9, flip=0.5)
    resumed.load_state_dict(state)
    rest = list(resumed)
    got = [(tuple(b["image_ids"]), tuple(b["flipped"]), b["images"]) for b in got + rest]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:2] == w[:2]
        np.testing.assert_array_equal(g[2], w[2])
    with pytest.raises(ValueError, match="state_dict"):
        loader(shards["tfrecord"], seed=1).load_state_dict(state)


def test_a_corrupt_record_is_replaced_marked_and_counted(corrupt_copy):
    folder, bad = corrupt_copy
    ld = loader(folder, shuffle=False, drop_last=False)
    batches = list(ld)
    assert len(batches) == 7 and all(b["images"].shape[0] == 4 for b in batches)
    b = batches[0]
    assert b["is_pad"][bad] and not b["is_pad"][bad + 1]
    assert b["image_ids"][bad] == b["image_ids"][bad + 1]
    np.testing.assert_array_equal(b["images"][bad], b["images"][bad + 1])
    assert "_failed" in b and "CRC" in b["_failed"][0][2]
    st = ld.stats()
    # Counted each time: the last batch repeats records 0 and 1 (drop_last=False).
    assert st["skipped_records"] == 2 and st["padded_images"] == 1 + 2
    # Decoded: this epoch's 26 good images, plus whatever of the next epoch the pipeline has
    # started on (it flows on across the epoch's end: at most the batches it prepares ahead).
    assert 28 - 2 <= st["decoded_by"]["cpu"] <= 28 - 2 + 4 * 4


def test_held_batches_stay_intact_and_too_many_is_a_clear_error(shards):
    ld = loader(shards["tfrecord"], batch_size=2, shuffle=False)
    it = iter(ld)
    held = [next(it) for _ in range(10)]
    copies = [h["images"].copy() for h in held]
    for _ in range(3):
        next(it)
    for h, c in zip(held, copies):
        np.testing.assert_array_equal(h["images"], c)
    addresses = set()
    for b in loader(shards["tfrecord"], batch_size=2):
        addresses.add(b["images"].__array_interface__["data"][0])
        del b
    assert len(addresses) <= 4, addresses
    ld = loader(shards["tfrecord"], batch_size=1, shuffle=False)
    it = iter(ld)
    with pytest.raises(dsprep.DsprepError, match="holds 16 batches"):
        hoard = [next(it) for _ in range(20)]
        del hoard


def test_splits_and_argument_errors_name_the_argument(shards):
    with pytest.raises(ValueError, match="^split: .*several splits .*train, val"):
        loader(shards["multi"])
    assert loader(shards["multi"], split="val", batch_size=1).records == 5
    with pytest.raises(ValueError, match="^split: "):
        loader(shards["multi"], split="test")
    bad = [("batch_size", dict(batch_size=0)), ("size", dict(size=3)), ("resize", dict(resize="crop")),
           ("flip", dict(flip=2.0)), ("dtype", dict(dtype="int8")), ("mean", dict(mean=(1, 2))),
           ("std", dict(std=(1, 0, 1))), ("max_boxes", dict(max_boxes=0)), ("device", dict(device="tpu")),
           ("decoders", dict(decoders="x")), ("threads", dict(threads=0)), ("rank", dict(rank=3, world_size=2)),
           ("world_size", dict(world_size=0)), ("output", dict(output="jax")), ("hsv", dict(hsv=(1, 2))),
           ("output", dict(output="numpy", device="cuda")), ("path", dict())]
    for name, kw in bad:
        path = shards["tfrecord"] / "nope" if name == "path" else shards["tfrecord"]
        with pytest.raises(ValueError, match=f"^{name}: "):
            loader(path, **kw)


def test_max_boxes_pads_and_drops(shards):
    ld = loader(shards["tfrecord"], max_boxes=1, shuffle=False)
    b = next(iter(ld))
    assert b["boxes"].shape == (4, 1, 4) and b["labels"].shape == (4, 1)
    assert (b["num_boxes"] <= 1).all()
    list(ld)
    assert ld.stats()["dropped_boxes"] > 0


def test_cuda_request_without_a_gpu_says_what_is_missing(shards):
    import shutil
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(dsprep.DsprepError, match="GPU path cannot run here"):
        dsprep._dsprep.CoreLoader(str(shards["tfrecord"]), device="cuda")
    core = dsprep._dsprep.CoreLoader(str(shards["tfrecord"]), device="auto", batch_size=4)
    assert core.device() == "cpu"
    assert any("running on the CPU" in w for w in core.warnings()), core.warnings()


def run_python(code, **env_changes):
    """Runs `code` in a fresh interpreter with the environment changed (None: removed)."""
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_asks_cuda_for_the_hardware_queues_the_gpu_pipeline_needs():
    show = "import os, dsprep; print(os.environ.get('CUDA_DEVICE_MAX_CONNECTIONS'))"
    assert run_python(show, CUDA_DEVICE_MAX_CONNECTIONS=None) == "32"
    # A value the user chose is kept.
    assert run_python(show, CUDA_DEVICE_MAX_CONNECTIONS="4") == "4"


def test_too_few_hardware_queues_refuse_the_gpu_and_say_how_to_fix_it(shards):
    code = f"""
import json, dsprep
try:
    dsprep._dsprep.CoreLoader({str(shards["tfrecord"])!r}, device="cuda")
    cuda = "no error"
except dsprep.DsprepError as e:
    cuda = "cuda: " + str(e)
core = dsprep._dsprep.CoreLoader({str(shards["tfrecord"])!r}, device="auto", batch_size=4)
print(json.dumps([cuda, "auto: " + core.device() + " " + " ".join(core.warnings())]))
"""
    import json
    cuda, auto = json.loads(run_python(code, CUDA_DEVICE_MAX_CONNECTIONS="8"))
    assert cuda.startswith("cuda: ") and "CUDA_DEVICE_MAX_CONNECTIONS=8 gives" in cuda, cuda
    assert "set CUDA_DEVICE_MAX_CONNECTIONS=32" in cuda, cuda
    assert auto.startswith("auto: cpu") and "CUDA_DEVICE_MAX_CONNECTIONS=8 gives" in auto, auto


def test_the_queue_count_is_the_one_at_import_not_a_later_change(shards):
    # CUDA reads the variable when a context is created; changing the environment afterwards
    # changes nothing, so the loader judges the value the package recorded at import.
    code = f"""
import os, dsprep
os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = "32"
try:
    dsprep.Loader({str(shards["tfrecord"])!r}, device="cuda")
    print("no error")
except dsprep.DsprepError as e:
    print(str(e).replace(chr(10), " "))
"""
    out = run_python(code, CUDA_DEVICE_MAX_CONNECTIONS="8")
    assert "CUDA_DEVICE_MAX_CONNECTIONS=8 gives" in out, out
