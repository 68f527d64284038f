"""Rows of a stored (memory-mapped) array read into batch tensors in one copy, into memory whose
pages are already mapped: the bulk of a training loader's work on the ``prepared`` format
(:mod:`umt.data.prepared`), where a batch is tens of MB.

Where a batch's memory comes from: page-locked memory in a CUDA process (the copy to the GPU then
runs asynchronously; PyTorch's caching host allocator reuses the blocks), shared memory in a
loader worker (the batch reaches the main process without another copy), else a ring of reused
buffers (:class:`BatchBuffers`).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch


class BatchBuffers:
    """A ring of reused batch buffers for the rows read from one stored array.

    Reading a ~30 MB batch into freshly allocated memory costs as much as the read itself on a
    CPU: the allocator hands large blocks back to the system when they are freed, so every new
    batch faults its pages in again (the loader ran at about half the raw memory-map read).
    Here the rows are read into one of ``depth`` buffers kept for the purpose, so their pages
    stay mapped.

    The contract: a buffer is reused only once no tensor made from it is alive. Each batch is a
    tensor over a numpy view of its buffer, and the tensor (and any view of it) holds a
    reference to the buffer until it is freed; :meth:`take` reads the reference count, so a
    batch that anyone still holds (the loader's prefetch, a list of batches, a slice of one) is
    never overwritten. When every buffer is held, the batch gets fresh memory (correct, only
    slower), and the ring does not grow beyond ``depth``.

    Where it is not used: in the page-locked memory of a CUDA process (``torch.empty(...,
    pin_memory=True)``: PyTorch's caching host allocator already reuses pinned blocks, and only it
    knows when an asynchronous copy to the GPU has finished reading one), and in loader workers
    (their batches are moved into shared memory to reach the main process; there a batch is
    allocated in shared memory at once, which saves that copy).

    Example:
        >>> stored, ring = np.arange(12).reshape(6, 2), BatchBuffers()
        >>> a = ring.take(stored, np.array([0, 1]))
        >>> b = ring.take(stored, np.array([4, 5]))  # `a` is held: another buffer
        >>> a.tolist(), b.tolist()
        ([[0, 1], [2, 3]], [[8, 9], [10, 11]])
        >>> ptr = b.data_ptr()
        >>> del b
        >>> ring.take(stored, np.array([2])).data_ptr() == ptr  # `b`'s buffer, free again
        True
    """

    def __init__(self, depth: int = 4) -> None:
        self.depth = depth
        self._slots: list[np.ndarray] = []  # (capacity, *row shape), owned by this ring only
        self._idle = [np.empty(0)]  # held like a free slot: its count is a free slot's count

    def __getstate__(self) -> dict[str, Any]:
        return {"depth": self.depth}  # a copy (a spawned worker's) starts with no buffers

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["depth"])  # type: ignore[misc]

    def _free_slot(self, rows: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        """A buffer of at least ``rows`` rows of ``shape`` that no live tensor uses."""
        free = sys.getrefcount(self._idle[0])  # the list's reference (+ the call's, if any)
        for i in range(len(self._slots)):
            if sys.getrefcount(self._slots[i]) == free:  # a live batch's view adds one
                slot = self._slots[i]
                if slot.shape[1:] == shape and slot.dtype == dtype and len(slot) >= rows:
                    return slot
                if len(self._slots) >= self.depth:  # free but unfit: replaced by one that fits
                    del self._slots[i]
                    break
        if len(self._slots) >= self.depth:  # every buffer held: fresh memory, not kept
            return np.empty((rows, *shape), dtype=dtype)
        self._slots.append(np.empty((rows, *shape), dtype=dtype))
        return self._slots[-1]

    def take(self, stored: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        """``stored[rows]`` (``rows`` in range) as a tensor over a free buffer, in one copy."""
        out = self._free_slot(len(rows), tuple(stored.shape[1:]), stored.dtype)[: len(rows)]
        np.take(stored, rows, axis=0, out=out, mode="clip")  # "clip": no buffered copy
        return torch.from_numpy(out)


def _shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory: a loader worker's batch reaches the main
    process without the copy that pickling an ordinary tensor makes."""
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def take_rows(
    stored: np.ndarray, rows: np.ndarray, buffers: BatchBuffers | None = None
) -> torch.Tensor:
    """``stored[rows]`` as a tensor, in one copy out of the memory map: into page-locked memory
    when CUDA is available and this is not a loader worker (the DataLoader's pinning finds it
    pinned already and the copy to the GPU runs asynchronously); into shared memory in a loader
    worker; else into one of ``buffers`` (see :class:`BatchBuffers`) when given.

    Example:
        >>> take_rows(np.arange(12).reshape(4, 3), np.array([1, 3])).tolist()
        [[3, 4, 5], [9, 10, 11]]
    """
    if len(rows) and not (0 <= rows.min() and rows.max() < len(stored)):
        return torch.from_numpy(np.ascontiguousarray(stored[rows]))  # numpy's index errors
    worker = torch.utils.data.get_worker_info() is not None
    pin = not worker and torch.cuda.is_available()
    if buffers is not None and not worker and not pin:
        return buffers.take(stored, rows)
    dtype = torch.from_numpy(np.empty(0, dtype=stored.dtype)).dtype
    shape = (len(rows), *stored.shape[1:])
    out = _shared_empty(shape, dtype) if worker else torch.empty(shape, dtype=dtype, pin_memory=pin)
    np.take(stored, rows, axis=0, out=out.numpy(), mode="clip")
    return out


__all__ = ["BatchBuffers", "take_rows"]
