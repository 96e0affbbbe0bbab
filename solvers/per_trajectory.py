"""Per-trajectory step sizes: every trajectory of a batch takes the steps it would take alone.

The shared-step loop of :mod:`solvers.rk` gives the whole batch one step size, set by the
trajectory that needs the smallest: on a batch of very different trajectories (a circular orbit
beside an eccentric one, say) the easy ones take the hard one's steps. Here each trajectory
``b`` has its own time ``t[b]``, step ``h[b]`` and controller state, and one loop iteration
attempts one step of every unfinished trajectory at once, as batched tensor ops:

- the stage inputs are ``y + h[b] * sum_j a_ij k_j`` row by row;
- ``f`` is called once per stage on the whole batch with ``t`` a tensor of shape
  ``batch_shape + (1,)`` (each trajectory's own time, broadcastable against ``y``; 0-d for a
  single trajectory), in ``y``'s dtype; an ``f`` that reads ``t`` must take a tensor there (the
  problems here do, and torchode's convention is the same through :mod:`solvers.peers.tode`);
- each trajectory's error norm, accept/reject decision and next step are DOPRI5's
  (:mod:`solvers.control`), computed for all rows at once in float64 tensors;
- a finished or failed trajectory stays where it is (its rows are evaluated but never moved),
  so the loop runs exactly as many iterations as the slowest trajectory takes attempts alone;
- dense output is the tableau's continuous extension, evaluated per row at its own ``theta``.

Each trajectory's steps equal those of the shared-step solver run on it alone, up to the last
bits of the arithmetic (the same formulas in batched form); ``tests/test_solver_per_trajectory``
checks the counts on DETEST's Kepler orbits D1-D5 in one batch. This is what torchode does
(Lienen and Günnemann, "torchode: A Parallel ODE Solver for PyTorch", 2022); the harness puts
both side by side. The loop has two host syncs per iteration: whether any trajectory is still
running, and how many outputs the accepted steps reached.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from solvers.base import Solution, Status
from solvers.control import NONFINITE_REJECTIONS, initial_steps
from solvers.controllers import Controller
from solvers.tableaux import ButcherTableau


@dataclass
class TrajectoryStats:
    """Per-trajectory counts of a per-trajectory solve (leading batch dimensions flattened).

    ``n_accepted``/``n_rejected``: each trajectory's steps; ``t_reached``: how far each got;
    ``status``: each one's :class:`~solvers.base.Status` value.
    """

    n_accepted: list[int]
    n_rejected: list[int]
    t_reached: list[float]
    status: list[str]


# each trajectory's state in the loop, as a code in one long tensor
_RUNNING, _DONE = 0, 1
_FAILED = {2: Status.MAX_STEPS, 3: Status.STEP_TOO_SMALL, 4: Status.NONFINITE}
_CODE = {status: code for code, status in _FAILED.items()}


def solve_per_trajectory(
    tableau: ButcherTableau,
    controller: Controller,
    f,
    y0: torch.Tensor,
    times: list[float],
    *,
    rtol: float,
    atol: float,
    max_steps: int,
) -> Solution:
    """The per-trajectory loop (called by :meth:`solvers.rk.RungeKutta.solve`)."""
    if tableau.dense is None or tableau.b_err is None:
        raise ValueError(
            f"per-trajectory steps need an embedded pair with dense output; "
            f"{tableau.name} has {'no b_err' if tableau.b_err is None else 'no dense'}"
        )
    shape = y0.shape
    d = shape[-1] if len(shape) else 1
    y = y0.reshape(-1, d)
    B = y.shape[0]
    dev, dt = y.device, y.dtype
    f64 = dict(dtype=torch.float64, device=dev)
    t_shape = (*shape[:-1], 1) if len(shape) > 1 else ()
    eps = torch.finfo(dt).eps
    nfe = 0

    def fb(tb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """``f`` on the batch, each row at its own time ``tb`` (``[B]``, in ``y``'s dtype)."""
        nonlocal nfe
        nfe += 1
        return f(tb.view(t_shape), yb.view(shape)).reshape(B, d)

    s = tableau.stages
    A = [torch.tensor([r], dtype=dt, device=dev) if r else None for r in tableau.a_rows()]
    if tableau.fsal:  # the last stage's input is y1 itself
        A[-1] = None
    bw = torch.tensor([[float(x) for x in tableau.b]], dtype=dt, device=dev)
    ew = torch.tensor([[float(x) for x in tableau.b_err]], dtype=dt, device=dev)
    c = [float(x) for x in tableau.c]
    deg = max(map(len, tableau.dense))
    P = torch.tensor(  # dense weights b_i(theta) = sum_j P[i, j] theta^(j+1)
        [[float(x) for x in r] + [0.0] * (deg - len(r)) for r in tableau.dense],
        dtype=dt,
        device=dev,
    )
    powers = torch.arange(1, deg + 1, dtype=dt, device=dev)
    fsal = tableau.fsal

    t0, t_end = times[0], times[-1]
    direction = 1.0 if t_end > t0 else -1.0
    hmax = abs(t_end - t0)
    T = torch.tensor(times, **f64)
    Ts = T * direction  # ascending
    nT = len(times)
    q = (tableau.error_order or tableau.order - 1) + 1
    ctrl = controller.fresh(q=q, span=hmax).rows(B, dev)

    t = torch.full((B,), t0, **f64)
    k1 = fb(t.to(dt), y)
    q_init = min(tableau.order, tableau.error_order or tableau.order) + 1
    h = initial_steps(
        lambda tb, yb: fb(tb.to(dt), yb), t0, y, k1, direction, q_init, rtol, atol, hmax
    )

    # Stages: autograd records the solve (backprop) when y0 or f's output requires a gradient;
    # then each stage is a fresh tensor and the combinations stack them. Otherwise they are
    # written in place into one buffer K [s, B*d] under no_grad: the same numbers, fewer ops.
    recorded = torch.is_grad_enabled() and (y.requires_grad or k1.requires_grad)
    K = None if recorded else y.new_empty(s, B * d)

    out = y.new_full((nT, B, d), math.nan)
    out[0] = y
    next_out = torch.ones(B, dtype=torch.long, device=dev)
    rows = torch.arange(B, device=dev)
    n_att = torch.zeros(B, dtype=torch.long, device=dev)  # attempted steps
    n_acc = torch.zeros(B, dtype=torch.long, device=dev)
    bad = torch.zeros(B, dtype=torch.long, device=dev)
    code = torch.zeros(B, dtype=torch.long, device=dev)  # 0 running, 1 done, >1 a failure
    iterations = 0
    tiny = 16.0 * eps

    context = contextlib.nullcontext() if recorded else torch.no_grad()
    with context:
        if K is not None:
            K[0].view(B, d).copy_(k1)
            k1 = K[0].view(B, d)
        while True:
            # the failures DOPRI5 checks before a step, row by row
            with torch.no_grad():
                running = code == _RUNNING
                code = torch.where(running & (n_att >= max_steps), _CODE[Status.MAX_STEPS], code)
                small = (h.abs() < tiny * t.abs()) | (h == 0.0)
                code = torch.where((code == _RUNNING) & small, _CODE[Status.STEP_TOO_SMALL], code)
                active = code == _RUNNING
                # Hairer's last-step rule, per row; finished rows stand still (h = 0)
                last = (t + 1.01 * h - t_end) * h > 0
                h = torch.where(last, t_end - t, h)
                hs = torch.where(active, h, 0.0)
                t_dt, h_dt = t.to(dt), hs.to(dt)
                hy = h_dt[:, None]
            if not bool(active.any()):  # the first host sync of this iteration
                break
            iterations += 1
            if k1 is None:  # a method without FSAL: its first stage at (t, y)
                k1 = fb(t_dt, y)
                if K is not None:
                    K[0].view(B, d).copy_(k1)
            ks = [k1]
            y1 = None
            for i in range(1, s):
                if A[i] is None:  # FSAL: the last stage is at (t + h, y1)
                    comb = bw[:, :i] @ (K[:i] if K is not None else torch.stack(ks).view(i, -1))
                    y1 = yi = torch.addcmul(y, hy, comb.view(B, d))
                else:
                    comb = A[i] @ (K[:i] if K is not None else torch.stack(ks).view(i, -1))
                    yi = torch.addcmul(y, hy, comb.view(B, d))
                ki = fb(torch.add(t_dt, h_dt, alpha=c[i]), yi)
                if K is not None:
                    K[i].view(B, d).copy_(ki)  # ki may be non-contiguous
                else:
                    ks.append(ki)
            Ks = K if K is not None else torch.stack(ks).view(s, -1)
            if y1 is None:
                y1 = torch.addcmul(y, hy, (bw @ Ks).view(B, d))
            with torch.no_grad():
                err = (ew @ Ks).view(B, d)
                sk = torch.maximum(y.abs(), y1.abs()).mul_(rtol).add_(atol)
                norm = torch.linalg.vector_norm(err.div_(sk), dim=-1).to(torch.float64)
                norm = norm.mul_(hs.abs()).div_(math.sqrt(d))
                accepted, h_new = ctrl.decide(norm, hs, active)
                bad = torch.where(accepted, 0, bad + (active & ~torch.isfinite(norm)))
                code = torch.where(active & (bad >= NONFINITE_REJECTIONS),
                                   _CODE[Status.NONFINITE], code)
                n_acc += accepted
                n_att += active
                t_new = torch.where(last, t_end, t + hs)
                # outputs due in each accepted step: at or before its end (within rounding)
                tol = torch.maximum(t_new.abs(), hs.abs()).mul_(8.0 * eps)
                reach = torch.searchsorted(Ts, t_new * direction + tol, right=True)
                n_due = torch.where(accepted, (reach - next_out).clamp_(min=0), 0)
                code = torch.where(accepted & last, _DONE, code)
                most = int(n_due.max())  # the second host sync of this iteration
            acc_col = accepted[:, None]
            for _ in range(most):
                due = n_due > 0
                j = next_out.clamp(max=nT - 1)
                Tj = T[j]
                theta = ((Tj - t) / torch.where(due, hs, 1.0)).to(dt)
                W = theta[:, None].pow(powers) @ P.T  # [B, s]: b_i(theta) per row
                inner = torch.addcmul(y, hy, torch.einsum("bs,sbd->bd", W, Ks.view(s, B, d)))
                at_end = (Tj - t_new).abs() <= tol
                val = torch.where(at_end[:, None], y1, inner)
                idx = rows[due]
                out = out.index_put((j[due], idx), val[due])
                next_out = next_out + due
                n_due = n_due - due.long()
            t = torch.where(accepted, t_new, t)
            y = torch.where(acc_col, y1, y)
            if not fsal:
                k1 = None
            elif K is not None:
                K[0].view(B, d).copy_(torch.where(acc_col, K[-1].view(B, d), K[0].view(B, d)))
                k1 = K[0].view(B, d)
            else:
                k1 = torch.where(acc_col, ks[-1], k1)
            h = torch.where(active, h_new, h)

    n_rej = n_att - n_acc
    codes = code.tolist()
    status_rows = [Status.OK if c_ == _DONE else _FAILED[c_] for c_ in codes]
    t_rows = t.tolist()
    stats = TrajectoryStats(n_acc.tolist(), n_rej.tolist(), t_rows, [str(x) for x in status_rows])
    status, message = Status.OK, ""
    failed = [b for b, st in enumerate(status_rows) if st != Status.OK]
    if failed:
        b = failed[0]
        status = status_rows[b]
        what = {
            Status.MAX_STEPS: f"reached max_steps={max_steps} attempted steps",
            Status.STEP_TOO_SMALL: "step size too small",
            Status.NONFINITE: "the error estimate stayed inf/NaN",
        }[status]
        message = (
            f"{len(failed)} of {B} trajectories stopped early; trajectory {b}: {what} "
            f"at t = {t_rows[b]:g}"
        )
    ys = out.view(nT, *shape) if len(shape) else out.view(nT)
    t_reached = min(t_rows, key=lambda x: x * direction)
    if status == Status.OK and not bool(torch.isfinite(ys).all()):
        status = Status.NONFINITE
        message = "the state became inf/NaN"
    slowest = max(range(B), key=lambda b: stats.n_accepted[b] + stats.n_rejected[b])
    return Solution(
        ys=ys,
        status=status,
        message=message,
        n_steps=iterations,
        n_accepted=stats.n_accepted[slowest],
        n_rejected=stats.n_rejected[slowest],
        nfe=nfe,
        t_reached=t_reached,
        trajectories=stats,
    )
