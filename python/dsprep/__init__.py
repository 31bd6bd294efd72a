"""dsprep: the GPU decode pipeline of `dsprep verify-throughput` as a training loader.

    loader = dsprep.Loader("out/", split="train2017", batch_size=256, size=640, flip=0.5)
    for epoch in range(10):
        loader.set_epoch(epoch)
        for batch in loader:          # a dict of tensors on the loader's device
            images, boxes = batch["images"], batch["boxes"]

Everything runs in the dsprep library (Rust): reading shards by random access, nvJPEG's
hardware engines and CUDA decoder, one fused resize/letterbox/flip/normalise kernel. The batch
tensor is the pipeline's own device buffer, handed over by DLPack (no copy); its buffer goes back
to the pipeline when the tensor is freed. See the README ("Python loader") for the exact
geometry and every argument.
"""

from __future__ import annotations

import os as _os
import sys as _sys
import warnings as _warnings

from . import _dsprep


def _cuda_started():
    """Whether PyTorch has already created its CUDA context (then it is too late to choose how
    many hardware queues contexts get)."""
    torch = _sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # a torch without CUDA support
        return False


# CUDA reads this once, when a context is created: with its default (8 queues) the GPU
# pipeline's streams can deadlock with a training loop's, so before anything starts CUDA the
# package asks for the maximum (a value the user set is kept; a GPU loader refuses too few).
if _dsprep.CONNECTIONS_ENV not in _os.environ and not _cuda_started():
    _os.environ[_dsprep.CONNECTIONS_ENV] = str(_dsprep.CONNECTIONS_NEEDED)
# What this process's contexts get (or, when CUDA had started, got): the loader checks this,
# not the environment of the moment (CUDA will not read a later change).
_CONNECTIONS = _os.environ.get(_dsprep.CONNECTIONS_ENV, "")

__all__ = ["Loader", "DsprepError"]

DsprepError = _dsprep.DsprepError

_OUTPUTS = ("torch", "numpy")


class Loader:
    """Batches of an object-detection shard folder, for a training loop.

    Each iteration yields a dict: ``images`` [B,3,S,S] (float16/float32), ``boxes`` [B,N,4]
    float32 xyxy in output pixels (after resize/letterbox and flip, padded with 0), ``labels``
    [B,N] int64 (padded with -1), ``is_crowd`` [B,N] bool, ``num_boxes`` [B] int64,
    ``image_ids`` [B] int64, ``orig_size`` [B,2] int64 (stored width, height), ``flipped`` [B]
    bool, ``scale`` [B,2] float32 and ``pad`` [B,2] float32 (x_out = x_stored * scale + pad,
    before the flip), ``is_pad`` [B] bool (an image standing in for a repeat or an unreadable
    record). N is the most boxes in the batch, or ``max_boxes``.
    """

    def __init__(self, path, split=None, batch_size=256, size=640, resize="letterbox",
                 flip=0.0, hsv=None, dtype="float16", mean=(0, 0, 0), std=(255, 255, 255),
                 bgr=False, max_boxes=None, shuffle=True, seed=0, drop_last=True,
                 device="auto", decoders="both", threads=None, rank=None, world_size=None,
                 output="torch"):
        if output not in _OUTPUTS:
            raise ValueError(f"output: {output!r}: expected 'torch' or 'numpy'")
        if not isinstance(device, str):
            device = str(device)  # a torch.device
        if output == "numpy" and device.startswith("cuda"):
            raise ValueError("output: 'numpy' holds host memory only; use device='cpu' "
                             "(or output='torch' for a CUDA device)")
        if output == "numpy" and device == "auto":
            device = "cpu"
        for name, value in (("mean", mean), ("std", std)):
            if not hasattr(value, "__len__"):
                raise ValueError(f"{name}: needs 3 values (one per channel)")
        if hsv is not None and not hasattr(hsv, "__len__"):
            raise ValueError("hsv: needs 3 gains (hue, saturation, value)")
        for name, value in (("batch_size", batch_size), ("size", size), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: must be an integer, got {value!r}")
        self._output = output
        self._core = _dsprep.CoreLoader(
            str(path), split, batch_size, size, resize, float(flip),
            None if hsv is None else [float(x) for x in hsv], dtype,
            [float(x) for x in mean], [float(x) for x in std], bool(bgr), max_boxes,
            bool(shuffle), seed, bool(drop_last), device, decoders, threads, rank, world_size,
            _CONNECTIONS)
        self.device = self._core.device()
        for w in self._core.warnings():
            _warnings.warn(f"dsprep.Loader: {w}", RuntimeWarning, stacklevel=2)
        if output == "torch":
            import torch  # only the torch output needs PyTorch
            self._torch = torch
            self._torch_device = torch.device(self.device)

    def __len__(self):
        """Batches per epoch (the same on every rank)."""
        return len(self._core)

    @property
    def rank(self):
        """(rank, world_size, local_rank) this loader serves."""
        return self._core.rank()

    @property
    def records(self):
        """Records in the split."""
        return self._core.records()

    @property
    def epoch(self):
        return self._core.epoch()

    def set_epoch(self, epoch):
        """Runs `epoch` next, from its first batch (the shuffle is seeded by it). Without it,
        each new pass over the loader runs the next epoch."""
        self._core.set_epoch(int(epoch))

    def state_dict(self):
        """Position (epoch, batches yielded) and what it depends on."""
        return dict(self._core.state())

    def load_state_dict(self, d):
        """Continues with exactly the batch an uninterrupted run would produce next."""
        keys = ("epoch", "batch", "seed", "rank", "world_size", "records", "batch_size")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"state_dict: missing {', '.join(missing)}")
        self._core.load_state(*(int(d[k]) for k in keys))

    def stats(self):
        """img/s, images per decoder, skipped records, dropped boxes, device bytes held."""
        return self._core.stats()

    def __iter__(self):
        self._core.begin()
        while True:
            got = self._core.next_batch()
            if got is None:
                return
            yield self._batch(*got)

    def _batch(self, epoch, index, images, meta, fields, failed):
        out = {}
        if self._output == "numpy":
            import numpy as np
            out["images"] = np.from_dlpack(images)
            raw = np.from_dlpack(meta)
            for name, dtype, shape, offset in fields:
                dt = np.dtype(dtype)
                n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
                out[name] = raw[offset:offset + n].view(dt).reshape(shape)
        else:
            torch = self._torch
            out["images"] = torch.from_dlpack(images)
            if self._torch_device.type == "cuda":
                # From pinned memory the copy is queued on the current stream without waiting
                # for it; from pageable memory CUDA first waits for the stream's earlier work,
                # which stalled the training loop once per batch (6 % of an H200's time).
                # The copy into pinned memory is NumPy's (one thread): torch's own CPU copy
                # (`pin_memory()`, `copy_`) runs on its OpenMP pool, whose spinning threads
                # took 6 of 16 cores from the decoders. The caching host allocator reuses the
                # pinned block only after the device copy is done.
                import numpy as np
                src = np.from_dlpack(meta)
                host = torch.empty(src.shape[0], dtype=torch.uint8, pin_memory=True)
                host.numpy()[:] = src
                raw = host.to(self._torch_device, non_blocking=True)
            else:
                raw = torch.from_dlpack(meta)
            for name, dtype, shape, offset in fields:
                dt = getattr(torch, dtype)
                size = torch.empty((), dtype=dt).element_size()
                n = 1
                for s in shape:
                    n *= s
                out[name] = raw[offset:offset + n * size].view(dt).reshape(shape)
        out["_epoch"], out["_index"] = epoch, index
        if failed:
            out["_failed"] = failed
        return out
