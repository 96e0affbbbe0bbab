"""Rosenbrock methods on the engine: a linearly implicit stepper for stiff problems.

A step of a :class:`~solvers.rosenbrock_tableaux.RosenbrockTableau` from ``(t, y)`` needs the
Jacobian ``J = df/dy`` there (and ``df/dt`` unless ``f`` is autonomous), one LU of
``I / (h gamma) - J`` and one solve per stage; no Newton iteration. :class:`RosenbrockStages`
is that stepper, with the interface :func:`solvers.loop.integrate` drives (``first``, ``step``,
``error_norm``, ``tensors``, ``keep``), so the step loop, the controllers, the norms, the output
collection and the failure rules are the engine's, unchanged.

- **Trajectories.** The last dimension of ``y0`` is one trajectory's state, the leading ones
  index independent trajectories (as everywhere in this package): ``J`` is one ``[d, d]`` block
  per trajectory, ``[B, d, d]``, factored with one batched ``torch.linalg.lu_factor_ex``.
- **The Jacobian**, at the start of every step (a rejected step keeps it, as rodas.f does):
  the ``jac(t, y)`` the solve is given (a problem's own), or by autograd: one evaluation of
  ``f`` on a leaf copy of ``y`` and one vector-Jacobian product per state component (``d``,
  each the same row of every block). ``df/dt`` is the forward difference of rodas.f
  (``delta = sqrt(eps * max(1e-5, |t|))``), skipped for an autonomous ``f``: said by
  ``autonomous=True``, or found at the first step, where ``f(t0 + delta, y0)`` equals
  ``f(t0, y0)`` bit for bit. Every call of ``f`` counts in ``nfe``, the Jacobian's one call
  too (as the harness's counting wrapper sees them all); ``njev`` counts the Jacobians.
- **Failures.** A singular matrix (its solves are inf/NaN) or a non-finite stage gives a
  non-finite error estimate: the controller rejects the step with its strongest shrink, and the
  loop's rule for repeated inf/NaN estimates stops the solve with ``nonfinite``.
- **Dense output**: RODAS's own continuous extension (order 3) where the tableau has one, else
  the cubic Hermite interpolant from ``f`` at both ends.
- **Gradients**: ``backprop`` records the steps (``lu_solve`` is differentiable); the Jacobian
  enters as a constant of each step (detached), the step sizes are detached as everywhere.
"""

from __future__ import annotations

import math

import torch

from solvers import dense as dense_ops
from solvers.base import (
    DEFAULT_MAX_STEPS,
    Capability,
    GradMode,
    Request,
    Solution,
    Solver,
    StepRecord,
)
from solvers.control import initial_step
from solvers.controllers import Controller, HairerController, controller_for, make_controller
from solvers.loop import Adaptive, integrate
from solvers.norms import RMSNorm
from solvers.output import DenseOutput, OutputCollector, Pending
from solvers.rosenbrock_tableaux import RosenbrockTableau

REPEAT_MAX = 2**14
"""Jacobians of at most this many entries (``B d d``) take the repeated-batch pass."""


def autograd_jacobian(f, t: float, y: torch.Tensor, shape: torch.Size,
                      create_graph: bool = False) -> torch.Tensor:
    """``df/dy`` per trajectory, ``[B, d, d]``, for ``y`` ``[B, d]``, by reverse-mode autograd.

    Small Jacobians: ``f`` once on ``d`` copies of the batch (``[d B, d]``, the trajectories
    are independent) and one backward pass with row ``i`` of the identity as copy ``i``'s
    cotangent, which gives every row of every block at once. Larger ones (or an ``f`` that
    takes no such batch): ``f`` on the batch and the ``d`` products in one batched backward pass
    (vmap over the cotangents); an op without a batching rule falls back to ``d`` passes.
    ``create_graph``: the Jacobian itself is recorded (its dependence on ``y`` and on ``f``'s
    parameters), for a solve that autograd differentiates."""
    B, d = y.shape
    eye = torch.eye(d, dtype=y.dtype, device=y.device)
    zeros = y.new_zeros(B, d, d)

    def leaf(x: torch.Tensor) -> torch.Tensor:
        return x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)

    with torch.enable_grad():
        if B * d * d <= REPEAT_MAX:
            x = leaf(y.repeat(d, 1))
            try:
                fx = f(t, x).reshape(d, B, d)
            except (RuntimeError, ValueError, IndexError, TypeError):
                fx = None  # an f that takes only its own shape
            if fx is not None:
                if not fx.requires_grad:  # f does not depend on y
                    return zeros
                (g,) = torch.autograd.grad(fx, x, eye.unsqueeze(1).expand(d, B, d),
                                           allow_unused=True, create_graph=create_graph)
                return zeros if g is None else g.view(d, B, d).transpose(0, 1)
        x = leaf(y)
        fx = f(t, x.view(shape)).reshape(B, d)
        if not fx.requires_grad:
            return zeros
        try:
            (g,) = torch.autograd.grad(fx, x, eye.unsqueeze(1).expand(d, B, d),
                                       retain_graph=True, allow_unused=True,
                                       is_grads_batched=True, create_graph=create_graph)
            return zeros if g is None else g.transpose(0, 1)
        except RuntimeError:  # an op without a batching rule: one pass per row
            pass
        rows = []
        for i in range(d):
            (g,) = torch.autograd.grad(fx[:, i].sum(), x, retain_graph=create_graph or i < d - 1,
                                       allow_unused=True, create_graph=create_graph)
            rows.append(torch.zeros_like(y) if g is None else g)
    return torch.stack(rows, 1)


def difference_jacobian(f, t: float, y: torch.Tensor, k: torch.Tensor,
                        shape: torch.Size) -> torch.Tensor:
    """``df/dy`` per trajectory by forward differences, ``[B, d, d]``, in one call of ``f`` on a
    batch of ``d * B`` states: the ``B`` trajectories with component ``j`` moved by rodas.f's
    increment ``sqrt(eps * max(1e-5, |y_j|))``, for every ``j`` (``k = f(t, y)``, ``[B, d]``).
    Accurate to about half the digits of the dtype, as a numerical Jacobian is."""
    B, d = y.shape
    eps = torch.finfo(y.dtype).eps
    with torch.no_grad():
        delta = torch.sqrt(eps * y.abs().clamp(min=1.0e-5))  # [B, d]
        Y = y.repeat(d, 1).view(d, B, d)
        idx = torch.arange(d, device=y.device)
        Y[idx, :, idx] += delta.T  # state j of copy j moved by its increment
        lead = shape[:-1] if len(shape) > 1 else ()
        fY = f(t, Y.view(d, *lead, d) if lead else Y.view(d, d)).reshape(d, B, d)
        cols = (fY - k.view(1, B, d)) / delta.T.unsqueeze(-1)  # [j, B, i]
    return cols.permute(1, 2, 0)


class RosenbrockStages:
    """One Rosenbrock step on rows ``[1, N]`` (the loop's form) of a ``[B, d]`` batch.

    The stages ``u_i`` are rows ``[1, N]``; each stage input ``y + sum_j a_ij u_j`` and each
    right-hand side's ``sum_j (C_ij / h) u_j`` is one ``addmm`` over the earlier stages, the
    solve one batched ``lu_solve`` on the ``[B, d, 1]`` view of the row."""

    def __init__(self, tab: RosenbrockTableau, fv, f, shape: torch.Size, bd: tuple[int, int],
                 jac, autonomous: bool | None, like: torch.Tensor) -> None:
        self.tab, self.fv, self.f, self.shape, self.bd = tab, fv, f, shape, bd
        self.jac, self.autonomous = jac, autonomous
        kw = dict(dtype=like.dtype, device=like.device)
        self.eye = torch.eye(bd[1], **kw)
        s = tab.stages
        self.A = [torch.tensor([row], **kw) if row else None for row in tab.A]
        self.C = [torch.tensor([row], **kw) if row else None for row in tab.C]
        self.m = torch.tensor([tab.m], **kw)
        self.e = torch.tensor([tab.e], **kw)
        self.D = None if tab.dense is None else torch.tensor(tab.dense, **kw)
        self.d_nonzero = [x != 0.0 for x in tab.d]
        self.nfe = 0  # calls outside fv (none: fv counts them all)
        self.njev = self.ndec = self.nsol = 0
        self.J = self.ft = None
        self.U: torch.Tensor | None = None  # the last step's stages [s, N]
        self.s = s
        self.eps = torch.finfo(like.dtype).eps

    def first(self, t: float, y: torch.Tensor) -> torch.Tensor:
        """``f(t, y)``, and the Jacobian (and ``df/dt``) for the steps from ``(t, y)``."""
        k = self.fv(t, y)
        B, d = self.bd
        # a solve autograd records (backprop) records the Jacobian too: y1 depends on J, and
        # J on y and on f's parameters
        record = torch.is_grad_enabled() and (k.requires_grad or y.requires_grad)
        if callable(self.jac):
            with torch.set_grad_enabled(record):
                self.J = self.jac(t, y.view(self.shape)).reshape(B, d, d)
        elif self.jac == "fd":  # a constant of the step, even under autograd
            self.J = difference_jacobian(self.f, t, y.detach().view(B, d),
                                         k.detach().view(B, d), self.shape)
            self.nfe += 1
        else:
            self.J = autograd_jacobian(self.f, t, y.view(B, d), self.shape, create_graph=record)
            self.nfe += 1  # the Jacobian's one call of f (on d copies of the batch)
        self.njev += 1
        self.ft = None
        if self.autonomous is not True:
            delta = math.sqrt(self.eps * max(1.0e-5, abs(t)))
            with torch.no_grad():
                k_d = self.fv(t + delta, y)
                if self.autonomous is None and bool(torch.equal(k_d, k)):
                    self.autonomous = True  # found at the first step: no df/dt from now on
                else:
                    self.autonomous = False
                    self.ft = (k_d - k.detach()) / delta
        return k

    def step(self, t: float, y: torch.Tensor, k1: torch.Tensor, h: float) -> torch.Tensor:
        tab = self.tab
        B, d = self.bd
        # a singular matrix needs no check of its own (no host sync): its solves are inf/NaN,
        # and so is the error estimate, which the step rule rejects
        lu, piv, _ = torch.linalg.lu_factor_ex(self.eye / (h * tab.gamma) - self.J)
        self.ndec += 1
        u: list[torch.Tensor] = []
        U = None
        for i in range(self.s):
            if i == 0:
                rhs = k1
            else:
                U = u[0] if i == 1 else torch.cat(u)
                fi = self.fv(t + tab.c[i] * h, torch.addmm(y, self.A[i], U))
                rhs = torch.addmm(fi, self.C[i], U, alpha=1.0 / h)
            if self.ft is not None and self.d_nonzero[i]:
                rhs = torch.add(rhs, self.ft, alpha=h * tab.d[i])
            sol = torch.linalg.lu_solve(lu, piv, rhs.view(B, d, 1))
            u.append(sol.view(1, -1))
        self.nsol += self.s
        self.U = U = torch.cat(u)
        return torch.addmm(y, self.m, U)

    def error_norm(self, norm, h, y, y1, rtol, atol) -> float:
        with torch.no_grad():
            # the stages already carry the step; an inf/NaN estimate gives an inf/NaN norm
            return norm(torch.mm(self.e, self.U), 1.0, y, y1, rtol, atol)

    def dense_terms(self) -> torch.Tensor:
        """``D u`` ``[2, N]``: the two rows of the continuous extension."""
        return torch.mm(self.D, self.U)

    @staticmethod
    def tensors(y, k1, y1):
        return y, k1, y1

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class RosenbrockDense:
    """The outputs inside an accepted step: the tableau's continuous extension, or the cubic
    Hermite interpolant (which waits for ``f(t1, y1)``, the next step's first call)."""

    def __init__(self, tab: RosenbrockTableau) -> None:
        self.tab = tab
        self.needs_next = tab.dense is None

    def emit(self, out: OutputCollector, eng: RosenbrockStages, t, y, k1, t1, y1, h):
        interior = out.due(t, t1, y1)
        if not interior:
            return None
        thetas = [th for _, th in interior]
        if self.needs_next:
            return Pending(interior, y, eng.keep(k1), y1, h, thetas)
        out.put(interior, self.rows(eng, y, y1, thetas))
        return None

    @staticmethod
    def rows(eng: RosenbrockStages, y, y1, thetas: list[float]) -> torch.Tensor:
        """``y + theta (y1 - y + (1 - theta) (D0 u + theta D1 u))`` at each theta, ``[n, N]``."""
        D0, D1 = eng.dense_terms().split(1)
        dy = y1 - y
        return torch.cat([y + th * (dy + (1.0 - th) * (D0 + th * D1)) for th in thetas])

    resolve = staticmethod(DenseOutput.resolve)  # the Hermite rows, once f(t1, y1) is known


class Rosenbrock(Solver):
    """An adaptive Rosenbrock solver of a :class:`RosenbrockTableau` (``rodas4``, ``ros3p``).

    The default controller is rodas.f's: Hairer's rule with ``safe = 0.9``, the step ratio
    within ``[0.2, 6]``, no Lund term (``beta = 0``), no growth after a rejection, and
    Gustafsson's predictive controller on top (``HairerController(predictive=True)``).
    Options: ``controller``, ``norm``, ``jac``, ``autonomous`` (see :mod:`solvers.rosenbrock`),
    ``record_steps`` (the checkpoint gradient).
    """

    adaptive = True
    implicit = True
    differentiable = True
    grad_modes = (GradMode.NONE, GradMode.BACKPROP, GradMode.ADJOINT, GradMode.ADJOINT_SEMINORM,
                  GradMode.CHECKPOINT)
    capabilities = frozenset({Capability.CONTROLLER, Capability.NORM, Capability.JACOBIAN,
                              Capability.RECORD_STEPS, Capability.REPLAY_STEP})
    controllers = ("hairer", "pid")

    def __init__(self, tableau: RosenbrockTableau, *, name: str | None = None,
                 controller: str | Controller | None = None, jac="autograd",
                 description: str = "") -> None:
        tableau.validate()
        self.jac = _jacobian_spec(jac)
        self.tableau = tableau
        self.name = name or tableau.name
        self.order = tableau.order
        self.controller = make_controller(
            controller or HairerController(safe=0.9, fac1=0.2, fac2=6.0, beta=0.0,
                                           predictive=True))
        controller_for(self, None)  # refuses one this solver does not take
        self.dense = RosenbrockDense(tableau)
        self.rtol_min = tableau.rtol_min
        self.kind = "Rosenbrock (linearly implicit), adaptive"
        self.description = description or (
            f"{tableau.name}: Rosenbrock {tableau.order}({tableau.error_order}), "
            f"{tableau.stages} stages, gamma = {tableau.gamma:.4g}, "
            f"{'its own' if tableau.dense else 'cubic Hermite'} dense output"
        )

    def _solve(self, req: Request) -> Solution:
        opts = req.options
        ctrl = controller_for(self, opts.get("controller"))
        jac = self.jac if opts.get("jac") is None else _jacobian_spec(opts["jac"])
        autonomous = opts.get("autonomous")
        if autonomous not in (None, True, False):
            raise ValueError(f"`autonomous` must be True, False or None; got {autonomous!r}")
        y0, times, f = req.y0, req.times, req.f
        shape = y0.shape
        d = shape[-1] if y0.dim() else 1
        bd = (y0.numel() // d, d)
        y = y0.reshape(1, -1)
        n_calls = [0]

        def fv(tt: float, yy: torch.Tensor) -> torch.Tensor:
            n_calls[0] += 1
            return f(tt, yy.view(shape)).reshape(1, -1)

        tab = self.tableau
        records: list[StepRecord] | None = [] if opts.get("record_steps") else None
        if records is not None:
            self._replay_shape = shape  # for replay_step (the checkpoint gradient)
        out = OutputCollector(times, y, torch.finfo(y0.dtype).eps)
        eng = RosenbrockStages(tab, fv, f, shape, bd, jac, autonomous, y)
        t0, t_end = times[0], times[-1]
        direction = 1.0 if t_end > t0 else -1.0
        ctrl = ctrl.fresh(q=tab.error_order + 1, span=abs(t_end - t0))
        norm = (opts.get("norm") or RMSNorm()).bind(y.shape[-1], d)
        k1 = eng.first(t0, y)
        h = ctrl.initial_step(
            lambda: initial_step(fv, t0, y, k1, direction, tab.order + 1, req.rtol, req.atol,
                                 ctrl.hmax, norm),
            direction,
        )
        rule = Adaptive(ctrl, norm, req.rtol, req.atol, req.max_steps or DEFAULT_MAX_STEPS,
                        t_end, torch.finfo(y0.dtype).eps)
        res = integrate(eng, rule, out, self.dense, t0, y, k1, h, fsal=False, records=records)
        return res.solution(
            out.stack(y).view(len(times), *shape), n_calls[0] + eng.nfe, steps=records,
            controller=ctrl.name, counts={"njev": eng.njev, "ndec": eng.ndec, "nsol": eng.nsol},
        )

    def replay_step(self, fv, rec: StepRecord, y: torch.Tensor, k1, thetas: list[float]):
        """The accepted step ``rec`` again from the row ``y`` with autograd on (the checkpoint
        gradient; :meth:`solvers.rk.RungeKutta.replay_step` gives the contract): the Jacobian
        (recorded), the stages, ``y1`` and the dense rows at ``thetas``. Returns
        ``(y1, None, rows)``."""
        shape = self._replay_shape
        d = shape[-1] if len(shape) else 1
        bd = (y.numel() // d, d)

        def f(tt, yy):  # the solve's f, through the counted row form
            return fv(tt, yy.reshape(1, -1)).reshape(yy.shape)

        eng = RosenbrockStages(self.tableau, fv, f, shape, bd, self.jac, None, y)
        k1 = eng.first(rec.t, y)
        y1 = eng.step(rec.t, y, k1, rec.h)
        rows = None
        if thetas:
            if self.dense.needs_next:
                rows = dense_ops.cubic_hermite(y, k1, y1, fv(rec.t1, y1), rec.h, thetas)
            else:
                rows = self.dense.rows(eng, y, y1, thetas)
        return y1, None, rows


JACOBIANS = ("autograd", "fd")


def _jacobian_spec(jac):
    """A ``jac`` option: a callable ``jac(t, y) -> [..., d, d]``, ``"autograd"`` (exact, the
    default) or ``"fd"`` (forward differences in one batched call of ``f``)."""
    if callable(jac) or jac in JACOBIANS:
        return jac
    raise ValueError(f"`jac` must be a callable jac(t, y) -> [..., d, d] or one of "
                     f"{', '.join(repr(j) for j in JACOBIANS)}; got {jac!r}")
