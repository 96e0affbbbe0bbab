"""The bytes autograd saves for the backward pass: live and peak, exact, device independent.

Inside ``with SavedBytes() as probe:`` every tensor autograd saves for backward (the inputs and
intermediates of recorded ops, and what a custom ``autograd.Function`` passes to
``ctx.save_for_backward``) goes through :func:`torch.autograd.graph.saved_tensors_hooks`. Each
*storage* is counted once, however many tensors (views, repeated saves) refer to it: the key is
the storage's data pointer and size, with a reference count. A saved tensor is released when
autograd drops it (the graph is freed after ``backward``/``autograd.grad``); a finalizer on the
packed handle then decrements its storage's count, and the storage's bytes leave ``live`` when
the count reaches zero. ``peak`` is the high-water mark of ``live``, so a backward pass that
records new graphs (the ``checkpoint`` mode's per-step recompute) is measured too: its peak is
the stored states plus one step's graph.

What it counts is what autograd holds for the backward pass, not what the allocator holds (no
caching, fragmentation or temporaries of the forward pass); on any device it is the same number
for the same computation. Saved parameters count (they are held by the graph, though they
would exist anyway); so do the adjoint's ``ys``, ``t`` and parameters saved by its Function.

Usage::

    with SavedBytes() as probe:
        gs = odeint(solver, f, y0, t, mode="backprop", n_steps=100)
        torch.autograd.grad(loss_fn(gs.ys), y0)
    probe.peak_bytes, probe.live_bytes, probe.total_bytes
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch


class _Packed:
    """The handle autograd keeps for one saved tensor; its death releases the tensor."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


@dataclass
class SavedBytes:
    """Context manager: counts the bytes autograd saves for backward while it is active.

    ``live_bytes``: held now; ``peak_bytes``: the most held at once; ``total_bytes``: every
    storage ever saved, counted once while it stayed saved (the sum without releases);
    ``n_saved``: tensors packed. Hooks are thread-local: a backward pass run inside the block
    on the same thread (CPU, or CUDA's autograd threads, which inherit the hooks) is seen.
    """

    live_bytes: int = 0
    peak_bytes: int = 0
    total_bytes: int = 0
    n_saved: int = 0
    _refs: dict[tuple[int, int, str], int] = field(default_factory=dict, repr=False)
    _ctx: Any = field(default=None, repr=False)

    @staticmethod
    def _key(t: torch.Tensor) -> tuple[tuple[int, int, str], int] | None:
        try:
            s = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse or storage-less tensors
            return None
        nbytes = int(s.nbytes())
        return (int(s.data_ptr()), nbytes, str(t.device)), nbytes

    def _pack(self, t: torch.Tensor) -> _Packed:
        # detached: the same storage without its grad_fn, so a saved *output* does not form a
        # reference cycle (handle -> tensor -> grad_fn -> handle) that would never be freed
        handle = _Packed(t.detach())
        self.n_saved += 1
        found = self._key(t)
        if found is None:
            return handle
        key, nbytes = found
        count = self._refs.get(key, 0)
        self._refs[key] = count + 1
        if count == 0:
            self.live_bytes += nbytes
            self.total_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        weakref.finalize(handle, self._release, key, nbytes)
        return handle

    def _release(self, key: tuple[int, int, str], nbytes: int) -> None:
        count = self._refs.get(key, 0) - 1
        if count <= 0:
            self._refs.pop(key, None)
            self.live_bytes -= nbytes
        else:
            self._refs[key] = count

    @staticmethod
    def _unpack(handle: _Packed) -> torch.Tensor:
        return handle.tensor

    def reset_peak(self) -> None:
        """Start a new high-water mark from what is live now."""
        self.peak_bytes = self.live_bytes

    def __enter__(self) -> SavedBytes:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
        self._ctx = None

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20
