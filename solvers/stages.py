"""The explicit RK stepper: one step of a Butcher tableau, its error estimate and its stages.

The state is flattened to a row ``[1, N]`` (``N`` = all elements of the batch), so each stage
input is one fused ``add`` or ``addmm`` of the stacked earlier stages with a row of ``A``. Two
engines do the arithmetic of a step on tensors, with the same ops on the same numbers:

- :class:`GraphStages`: every op out of place, so autograd can record the solve (``backprop``,
  and the ``checkpoint`` gradient's replay);
- :class:`BufferedStages`: the stages written in place into one preallocated ``[s, N]`` buffer
  under ``no_grad``, for solves nothing records: fewer tensor dispatches per step.

The ``host`` backend's engine (:mod:`solvers.rk_host`) has the same interface on Python floats.
The loop (:mod:`solvers.loop`) sees only that interface: ``first``, ``step``, ``error_norm``,
``carry``, ``tensors`` (and ``stacked``, ``final``, ``keep`` for dense output).
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass

import torch

from solvers.base import RHS
from solvers.tableaux import ButcherTableau


class Combo(enum.Enum):
    """How a stage input ``y + h * sum_j w_j k_j`` is formed: one nonzero weight (``add``) or a
    row of weights over the leading stages (``addmm``)."""

    ONE = "one"
    MM = "mm"


@dataclass
class Coefficients:
    """A tableau's coefficients as tensors on one device/dtype, in the form the engines use."""

    tableau: ButcherTableau
    c: list[float]
    rows: list[tuple]  # per stage: (Combo.ONE, j, a) or (Combo.MM, n, row [1, n]); row 0 unused
    b: tuple
    e: torch.Tensor | None


def _combination(weights: list[float], like: torch.Tensor) -> tuple:
    nonzero = [j for j, w in enumerate(weights) if w != 0.0]
    if len(nonzero) == 1:
        return (Combo.ONE, nonzero[0], weights[nonzero[0]])
    n = (nonzero[-1] + 1) if nonzero else 1
    return (Combo.MM, n, torch.tensor([weights[:n]], dtype=like.dtype, device=like.device))


def _combine(y: torch.Tensor, ks: list[torch.Tensor], spec: tuple, h: float) -> torch.Tensor:
    """``y + h * sum_j w_j k_j`` in one or two fused ops."""
    if spec[0] is Combo.ONE:
        return torch.add(y, ks[spec[1]], alpha=h * spec[2])
    n = spec[1]
    k = ks[0] if n == 1 else torch.cat(ks[:n])
    return torch.addmm(y, spec[2], k, alpha=h)


class GraphStages:
    """A step's stages as a list of out-of-place tensors: autograd can record them."""

    def __init__(self, fv, co: Coefficients) -> None:
        self.fv, self.co = fv, co
        self.ks: list[torch.Tensor] = []
        self.nfe = 0  # the calls go through ``fv``, which counts them

    def step(self, t: float, y: torch.Tensor, k1: torch.Tensor, h: float) -> torch.Tensor:
        """All stages of a step of size ``h`` from ``(t, y)``; the new state ``y1``."""
        co = self.co
        s, fsal = co.tableau.stages, co.tableau.fsal
        ks = [k1]
        y1 = None
        for i in range(1, s):
            if fsal and i == s - 1:
                y1 = _combine(y, ks, co.b, h)
                yi = y1
            else:
                yi = _combine(y, ks, co.rows[i], h)
            ks.append(self.fv(t + co.c[i] * h, yi))
        if y1 is None:
            y1 = _combine(y, ks, co.b, h)
        self.ks = ks
        return y1

    def stacked(self) -> torch.Tensor:
        return torch.cat(self.ks)

    def final(self) -> torch.Tensor:
        return self.ks[-1]

    def carry(self) -> torch.Tensor:
        return self.ks[-1]

    def first(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return self.fv(t, y)

    def error_norm(self, norm, h, y, y1, rtol, atol) -> float:
        """The ``norm`` of the step's error estimate (detached)."""
        with torch.no_grad():
            err = torch.mm(self.co.e, torch.cat(self.ks))
        return norm(err, h, y, y1, rtol, atol)

    @staticmethod
    def tensors(y, k1, y1):
        return y, k1, y1

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        return x


class BufferedStages:
    """A step's stages written in place into one preallocated buffer ``K`` ``[s, N]``.

    The same ops as :class:`GraphStages` on the same numbers (each stage input is one ``add`` or
    ``addmm`` over the leading rows of ``K``, the error one ``mm``), without the per-stage
    ``cat``, reshapes and allocations. Only for solves autograd does not record (the caller runs
    it under ``no_grad``): ``K`` and the stage-input buffer are overwritten every step. The new
    state ``y1`` is always a fresh tensor; the rows handed out by :meth:`first`, :meth:`final`
    and :meth:`carry` are views of ``K``, valid until the next step (:meth:`keep` copies one
    that must outlive it). ``f`` is called on views of the user's shape, as ``fv`` would.
    A solver keeps the buffers of its last buffered solve and reuses them for the next one of
    the same layout (:func:`engine`; ``busy`` while a solve runs on them).
    """

    def __init__(
        self, tableau: ButcherTableau, f: RHS, shape: torch.Size, co: Coefficients, y: torch.Tensor
    ) -> None:
        s, n = tableau.stages, y.shape[-1]
        self.f, self.shape, self.s, self.fsal = f, shape, s, tableau.fsal
        self.K = K = y.new_empty(s, n)
        self.rows = K.split(1)  # row i as [1, N]
        self.views = K.view(s, *shape).unbind(0)  # row i in the user's shape
        self.buf = y.new_empty(1, n)
        self.bufv = self.buf.view(shape)
        self.b = self._plan(co.b)
        # stages whose input goes into ``buf``: (c_i, row view, plan); the FSAL last stage's
        # input is y1 itself
        inner = range(1, s - 1) if self.fsal else range(1, s)
        self.inner = [(co.c[i], self.views[i], *self._plan(co.rows[i])) for i in inner]
        self.c_last = co.c[s - 1]
        self.e = co.e
        self.nfe = 0
        self.busy = False  # a solve is running on these buffers

    def _plan(self, spec: tuple) -> tuple[bool, torch.Tensor, object]:
        """``(one, rows, weight)``: ``y + (h w) k_j`` (torch.add) or ``y + h w @ K[:n]``
        (addmm), the ops of :func:`_combine`."""
        if spec[0] is Combo.ONE:
            return (True, self.rows[spec[1]], spec[2])
        return (False, self.K[: spec[1]], spec[2])

    def step(self, t: float, y: torch.Tensor, k1: torch.Tensor, h: float) -> torch.Tensor:
        K0 = self.rows[0]
        if k1 is not K0:
            K0.copy_(k1)
        f, shape, buf, bufv = self.f, self.shape, self.buf, self.bufv
        for c, view, one, k, w in self.inner:
            if one:
                torch.add(y, k, alpha=h * w, out=buf)
            else:
                torch.addmm(y, w, k, alpha=h, out=buf)
            ki = f(t + c * h, bufv)
            if ki.shape != shape:
                ki = ki.reshape(shape)  # what ``fv`` does; raises on a wrong size
            view.copy_(ki)
        self.nfe += self.s - 1
        y1 = self._combine(y, self.b, h)
        if self.fsal:
            ki = f(t + self.c_last * h, y1.view(shape))
            if ki.shape != shape:
                ki = ki.reshape(shape)
            self.views[-1].copy_(ki)
        return y1

    @staticmethod
    def _combine(y: torch.Tensor, plan: tuple, h: float) -> torch.Tensor:
        one, k, w = plan
        if one:
            return torch.add(y, k, alpha=h * w)
        return torch.addmm(y, w, k, alpha=h)

    def stacked(self) -> torch.Tensor:
        return self.K

    def final(self) -> torch.Tensor:
        """The last stage (a view of ``K``)."""
        return self.rows[-1]

    def carry(self) -> torch.Tensor:
        """The last stage, moved to row 0 (the next step's first stage, FSAL)."""
        K0 = self.rows[0]
        K0.copy_(self.rows[-1])
        return K0

    def first(self, t: float, y: torch.Tensor) -> torch.Tensor:
        """``f(t, y)`` into row 0 (the first stage of a method without FSAL)."""
        k = self.f(t, y.view(self.shape))
        if k.shape != self.shape:
            k = k.reshape(self.shape)
        self.views[0].copy_(k)
        self.nfe += 1
        return self.rows[0]

    def error_norm(self, norm, h, y, y1, rtol, atol) -> float:
        return norm(torch.mm(self.e, self.K), h, y, y1, rtol, atol)

    @staticmethod
    def tensors(y, k1, y1):
        return y, k1, y1

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class Holding:
    """The buffered loop's context: ``no_grad``, and the engine free for the next solve after it
    (see :func:`engine`)."""

    def __init__(self, eng: BufferedStages) -> None:
        self.eng = eng
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.no_grad.__enter__()

    def __exit__(self, *exc) -> None:
        self.no_grad.__exit__(*exc)
        self.eng.f = None  # hold no reference to the solve's right-hand side
        self.eng.busy = False


def coefficients(tableau: ButcherTableau, like: torch.Tensor, cache: dict) -> Coefficients:
    """The tableau's :class:`Coefficients` on ``like``'s dtype and device (kept in ``cache``)."""
    key = (like.dtype, like.device)
    co = cache.get(key)
    if co is None:
        rows = [("none",)] + [_combination(r, like) for r in tableau.a_rows()[1:]]
        b = _combination([float(x) for x in tableau.b], like)
        e = None
        if tableau.b_err is not None:
            e = torch.tensor([[float(x) for x in tableau.b_err]], dtype=like.dtype,
                             device=like.device)
        co = cache[key] = Coefficients(tableau, [float(x) for x in tableau.c], rows, b, e)
    return co


def recorded(y: torch.Tensor, k1: torch.Tensor) -> bool:
    """Whether autograd records a solve from ``y`` whose first stage is ``k1``."""
    return torch.is_grad_enabled() and (y.requires_grad or k1.requires_grad)


def engine(fv, f: RHS, shape: torch.Size, co: Coefficients, y: torch.Tensor, k1: torch.Tensor,
           cache: dict):
    """The tensor stage engine for a solve, and the context to run its loop in.

    Buffered (in place, under ``no_grad``) unless autograd would record the solve. The buffers
    of the last buffered solve (kept in ``cache``) are reused when the layout is the same (the
    adjoint solves every output interval anew); a solve nested inside ``f`` gets its own."""
    if recorded(y, k1) or k1.shape != y.shape or k1.dtype != y.dtype or k1.device != y.device:
        return GraphStages(fv, co), contextlib.nullcontext()
    key = (shape, y.dtype, y.device, id(co))
    slot = cache.get("buffered")
    if slot is not None and slot[0] == key and not slot[1].busy:
        eng = slot[1]
        eng.f, eng.nfe = f, 0
    else:
        eng = BufferedStages(co.tableau, f, shape, co, y)
        if slot is None or not slot[1].busy:
            cache["buffered"] = (key, eng)
    eng.busy = True
    return eng, Holding(eng)
