"""The vector–Jacobian product of one evaluation of ``f``, and the flat row it goes into.

The continuous adjoint's right-hand side (:mod:`.adjoint`) costs one call of ``f`` and one
VJP per evaluation; on a small field (the spiral's 2-50-2 MLP on a batch of 20) the VJP's own
arithmetic is a few microseconds, so the Python around the autograd engine is a good part of
its cost. :func:`vjp` is ``torch.autograd.grad(output, inputs, v, allow_unused=True)`` without
the argument normalisation and checks that ``grad`` runs in Python on every call
(``_make_grads``: shape and dtype checks, ``ones_like`` for scalars, batched-grad dispatch,
the ``__torch_function__`` look-up):
a few attribute comparisons establish what they check (one output tensor, ``v`` of its shape,
dtype and device, plain tensors), and the engine entry point ``grad`` ends in,
``torch.autograd.graph._engine_run_backward``, does the work. Where that private function is
missing (another torch release) or a check fails, it is ``torch.autograd.grad`` itself (with
its error messages), so the result is the same tensors, bit for bit, either way.

:func:`flatten` concatenates the evaluation and its VJPs into the augmented state's row, one
call instead of a ``reshape`` per tensor and a ``cat``.
"""

from __future__ import annotations

import torch
from torch.overrides import has_torch_function

try:  # torch >= 2.3; the function torch.autograd.grad calls after its checks
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # pragma: no cover - older torch: the public path below
    _engine_run_backward = None


def vjp(
    output: torch.Tensor, inputs: tuple[torch.Tensor, ...], v: torch.Tensor
) -> tuple[torch.Tensor | None, ...]:
    """``v^T d output / d inputs`` for each input (None where ``output`` does not depend on
    it), freeing ``output``'s graph; the values of ``torch.autograd.grad``. An ``output`` with
    no graph at all (an ``f`` that uses none of the inputs: a constant field, or ``f(t)`` when
    ``t`` needs no gradient) depends on none of them: all None, where ``torch.autograd.grad``
    would raise."""
    if not output.requires_grad:
        return (None,) * len(inputs)
    if (
        _engine_run_backward is None
        or v.shape != output.shape
        or v.dtype != output.dtype
        or v.device != output.device
        or not output.requires_grad
        or has_torch_function((output, v, *inputs))
    ):
        return torch.autograd.grad(output, inputs, v, allow_unused=True)
    return _engine_run_backward((output,), (v,), False, False, inputs, True, accumulate_grad=False)


_flatten_dense = getattr(torch._C._nn, "flatten_dense_tensors", None)


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat([t.reshape(-1) for t in tensors])`` (at least two tensors, one dtype): a new
    1-D tensor, by ``torch._utils._flatten_dense_tensors``'s C++ loop where it exists."""
    if _flatten_dense is None or len(tensors) < 2:  # pragma: no cover - older torch
        return torch.cat([t.reshape(-1) for t in tensors])
    return _flatten_dense(tensors)
