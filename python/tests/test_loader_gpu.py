"""The loader on a CUDA device with PyTorch output (the device suite). Skipped, saying why, on a
machine without PyTorch or without a CUDA GPU."""

import subprocess

import numpy as np
import pytest

import dsprep

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to PyTorch", allow_module_level=True)

S = 64


def gpu(path, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("size", S)
    kw.setdefault("device", "cuda:0")
    return dsprep.Loader(str(path), **kw)


def cpu(path, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("size", S)
    return dsprep.Loader(str(path), device="cpu", output="numpy", threads=4, **kw)


def test_torch_tensors_on_the_device_equal_the_cpu_batch(shards):
    for decoders in ("both", "hw", "cuda"):
        g = list(gpu(shards["tfrecord"], seed=4, flip=0.5, dtype="float32", decoders=decoders))
        c = list(cpu(shards["tfrecord"], seed=4, flip=0.5, dtype="float32"))
        assert len(g) == len(c) == 6
        worst = 0.0
        for x, y in zip(g, c):
            assert x["images"].device.type == "cuda" and x["images"].dtype == torch.float32
            for k in ("boxes", "labels", "is_crowd", "num_boxes", "image_ids", "orig_size",
                      "flipped", "scale", "pad", "is_pad"):
                assert x[k].device.type == "cuda", k
                np.testing.assert_array_equal(x[k].cpu().numpy(), y[k], err_msg=k)
            d = np.abs(x["images"].cpu().numpy() - y["images"])
            # nvJPEG and the CPU decoder round IDCT and upsampling differently: a few levels
            # at most, under one level on average.
            assert d.mean() * 255 < 1.0, (decoders, d.mean() * 255)
            assert d.max() * 255 < 24, (decoders, d.max() * 255)
            worst = max(worst, d.max() * 255)
        print(f"{decoders}: GPU vs CPU max {worst:.1f} levels")


def test_hsv_jitter_on_the_gpu_equals_the_cpu_reference(shards):
    kw = dict(seed=4, flip=0.5, dtype="float32", hsv=(0.015, 0.7, 0.4))
    g = list(gpu(shards["tfrecord"], decoders="hw", **kw))
    c = list(cpu(shards["tfrecord"], **kw))
    for x, y in zip(g, c):
        d = np.abs(x["images"].cpu().numpy() - y["images"])
        # The decoders' few levels, times at most the value gain (1.4).
        assert d.mean() * 255 < 1.5, d.mean() * 255
        assert d.max() * 255 < 36, d.max() * 255


def test_stream_correctness_on_a_side_stream(shards):
    # decoders="hw": each image always goes to the same decoder, so runs are bit-identical
    # (with "both", timing decides which decoder takes an image; their pixels differ slightly).
    ref = [b["images"].clone() for b in gpu(shards["tfrecord"], shuffle=False, decoders="hw")]
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        big = torch.randn(4096, 4096, device="cuda")
        for k, b in enumerate(gpu(shards["tfrecord"], shuffle=False, decoders="hw")):
            for _ in range(8):
                big = big @ big * 1e-4  # keep the side stream busy
            assert torch.equal(b["images"], ref[k])
    s.synchronize()


def test_held_batches_unchanged_and_the_ring_cycles_without_allocating(shards):
    ld = gpu(shards["tfrecord"], batch_size=2, shuffle=False)
    it = iter(ld)
    held = [next(it) for _ in range(10)]
    copies = [h["images"].clone() for h in held]
    for _ in range(3):
        next(it)
    torch.cuda.synchronize()
    for h, c in zip(held, copies):
        assert torch.equal(h["images"], c)
    del held, copies, it
    ld = gpu(shards["tfrecord"], batch_size=2)
    ptrs, allocs = [], []
    for epoch in range(4):
        for b in ld:
            ptrs.append(b["images"].data_ptr())
            allocs.append(ld.stats()["device_allocations"])
            del b
    made = ld.stats()["ring_buffers"][0]
    assert len(set(ptrs)) <= made, (len(set(ptrs)), made)
    assert allocs[len(allocs) // 2] == allocs[-1], allocs


def nvml_used_mib():
    import os
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, used = (x.strip() for x in line.split(","))
        if int(pid) == os.getpid():
            return int(used)
    return None


def test_device_memory_flat_over_50_epochs(shards):
    ld = gpu(shards["tfrecord"], batch_size=8, flip=0.5)
    used = []
    for epoch in range(50):
        for b in ld:
            b["images"].float().mean().item()
        used.append(nvml_used_mib())
    print("NVML MiB at epochs 1, 10, 50:", used[0], used[9], used[-1])
    if used[-1] is None:
        pytest.skip("NVML shows no per-process figure here")
    assert used[-1] - used[4] <= 2, used


def test_fp16_batch_and_stats(shards):
    ld = gpu(shards["tfrecord"])
    b = next(iter(ld))
    assert b["images"].dtype == torch.float16 and tuple(b["images"].shape) == (4, 3, S, S)
    st = ld.stats()
    assert st["decoded_by"]["hardware"] + st["decoded_by"]["cuda"] + st["decoded_by"]["cpu"] >= 4
    assert st["device_bytes"] > 0


def test_corrupt_record_on_the_gpu(corrupt_copy):
    folder, bad = corrupt_copy
    ld = gpu(folder, shuffle=False, drop_last=False)
    b = next(iter(ld))
    assert bool(b["is_pad"][bad]) and b["image_ids"][bad] == b["image_ids"][bad + 1]
    assert torch.equal(b["images"][bad], b["images"][bad + 1])
    assert ld.stats()["skipped_records"] == 1  # one batch read so far


def test_cuda_started_before_import_is_refused_and_import_first_runs(shards):
    # PyTorch creates its context before `import dsprep` with the variable unset: the context
    # has 8 hardware queues, so the GPU loader refuses (it would deadlock in a training loop).
    import os
    import sys
    env = {k: v for k, v in os.environ.items() if k != "CUDA_DEVICE_MAX_CONNECTIONS"}
    path = str(shards["tfrecord"])
    late = f"""
import torch; torch.zeros(1, device="cuda")
import dsprep
try:
    dsprep.Loader({path!r}, batch_size=4, size=64, device="cuda:0"); print("ran")
except dsprep.DsprepError as e:
    print("refused:", e)
"""
    out = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:") and "CUDA_DEVICE_MAX_CONNECTIONS is unset" in out.stdout, out.stdout
    early = f"""
import dsprep, torch; torch.zeros(1, device="cuda")
ld = dsprep.Loader({path!r}, batch_size=4, size=64, device="cuda:0")
print(ld.device, sum(b["images"].shape[0] for b in ld))
"""
    out = subprocess.run([sys.executable, "-c", early], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cuda:0", "24"], out.stdout
    # Following the advice inside the process, after CUDA started, does not count: CUDA read
    # the variable when the context was made.
    after = late.replace("import dsprep", "import dsprep, os; os.environ['CUDA_DEVICE_MAX_CONNECTIONS'] = '32'")
    out = subprocess.run([sys.executable, "-c", after], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:"), out.stdout
