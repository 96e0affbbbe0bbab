"""Per-trajectory step sizes: every trajectory of a batch takes the steps it would take alone.

The shared-step loop of :mod:`solvers.rk` gives the whole batch one step size, set by the
trajectory that needs the smallest: on a batch of very different trajectories (a circular orbit
beside an eccentric one, say) the easy ones take the hard one's steps. Here each trajectory
``b`` has its own time ``t[b]``, step ``h[b]`` and controller state, and one loop iteration
attempts one step of every unfinished trajectory at once, as batched tensor ops:

- the stages are kept scaled by each row's step, ``K[i] = h[b] * k_i`` (one ``mul``, which also
  writes ``f``'s output into its buffer), so a stage input ``y + h[b] * sum_j a_ij k_j`` is one
  ``addmv`` (or ``add``) over the rows of ``K``, the error estimate one ``mv``, and the dense
  output needs no step sizes;
- ``f`` is called once per stage on the whole batch with ``t`` a tensor of shape
  ``batch_shape + (1,)`` (each trajectory's own time, broadcastable against ``y``; 0-d for a
  single trajectory), in ``y``'s dtype; an ``f`` that reads ``t`` must take a tensor there (the
  problems here do, and torchode's convention is the same through :mod:`solvers.peers.tode`);
- each trajectory's error norm (:meth:`solvers.norms.RMSNorm.rows`), accept/reject decision and
  next step (the controller's rows, :meth:`solvers.controllers.Controller.rows`) are computed
  for all rows at once; times and steps are float64 ``[B]`` tensors (the shared loop keeps them
  as Python floats, the same IEEE doubles), the stage times all stages' in two ops;
- a finished trajectory stays where it is: its last step ends exactly at ``t_end``, so the
  last-step rule gives it a step of 0 from then on; a failed one gets a step of 0. Its rows are
  evaluated but never move, and the loop runs exactly as many iterations as the slowest
  trajectory takes attempts alone;
- dense output is the tableau's continuous extension, evaluated only for the (trajectory,
  output) pairs that accepted steps reached. The stages of the last few iterations stay in a
  ring of buffers, and the pairs of all of them are evaluated in one batch when the ring wraps.

Each trajectory's steps equal those of the shared-step solver run on it alone, up to the last
bits of the arithmetic (the same formulas in batched form); ``tests/test_solver_per_trajectory``
checks the counts on DETEST's Kepler orbits D1-D5 in one batch. This is what torchode does
(Lienen and Günnemann, "torchode: A Parallel ODE Solver for PyTorch", 2022); the harness puts
both side by side.

The loop has one host sync per iteration: three sums read together (the trajectories still
running, those whose next step is too small, and the error norms, whose sum is not finite when
one is not), and one more when the ring wraps (how many outputs are due). The rare events (a
step too small, an inf/NaN error estimate) cost ops only in the iterations where that read shows
them. Without autograd the stages, the state and the stage inputs are buffers written in place;
with it (``backprop``) the same ops run out of place on fresh tensors, so both take the same
steps, and the outputs are evaluated after every iteration.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from solvers.base import Solution, Status
from solvers.control import NONFINITE_REJECTIONS, initial_steps
from solvers.controllers import Controller
from solvers.norms import RMSNorm
from solvers.row_stages import RowOutputs, RowStages
from solvers.tableaux import ButcherTableau

RING_SLOTS = 16
"""At most this many iterations' stages are kept for the outputs, evaluated together."""
RING_BYTES = 32 * 2**20
"""... and at most this many bytes of them (at least one iteration's)."""


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


# each trajectory's state in the loop, as its index here (None: running), in one long tensor
# `code`; a stopped trajectory's code also holds its attempted steps: state + _N * attempts
_STATES = (None, Status.OK, Status.MAX_STEPS, Status.STEP_TOO_SMALL, Status.NONFINITE)
_CODE = {st: i for i, st in enumerate(_STATES) if st is not None}
_RUNNING = _STATES.index(None)
_N = len(_STATES)


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
    lng = dict(dtype=torch.long, device=dev)
    t_shape = (*shape[:-1], 1) if len(shape) > 1 else ()
    eps = torch.finfo(dt).eps
    calls = 0

    def fb(tb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """``f`` on the batch, each row at its own time ``tb`` (``[B]`` float64)."""
        nonlocal calls
        calls += 1
        return f(tb.to(dt).view(t_shape), yb.view(shape)).reshape(B, d)

    t0, t_end = times[0], times[-1]
    direction = 1.0 if t_end > t0 else -1.0
    past = torch.gt if direction > 0 else torch.lt  # Hairer's last-step test, signed
    hmax = abs(t_end - t0)
    T = torch.tensor(times, **f64)
    Ts = T * direction  # ascending
    nT = len(times)
    q = (tableau.error_order or tableau.order - 1) + 1
    ctrl = controller.fresh(q=q, span=hmax).rows(B, dev)
    norm = RMSNorm(d)

    k1 = fb(torch.full((B,), t0, **f64), y)
    q_init = min(tableau.order, tableau.error_order or tableau.order) + 1
    h = initial_steps(fb, t0, y, k1, direction, q_init, rtol, atol, hmax)

    # autograd records the solve (backprop) when y0 or f's output requires a gradient
    recorded = torch.is_grad_enabled() and (y.requires_grad or k1.requires_grad)
    slot_bytes = (tableau.stages + 2) * y.numel() * y.element_size()
    M = 1 if recorded else max(1, min(RING_SLOTS, RING_BYTES // slot_bytes))
    # the clock ring, float64 [3, (M + 1) * B]: per slot the rows' times (the next slot's are
    # the times after the step), the steps taken and max(|t1|, |h|), the outputs' rounding
    # tolerance over `rel`
    rel = 8.0 * eps  # an output within rel * max(|t1|, |h|) of a step's end t1 is at its end
    clock = torch.empty(3, (M + 1) * B, **f64)
    t_of, h_of, mx_of = (x.split(B) for x in clock.unbind(0))
    t_of[0].fill_(t0)
    eng = RowStages(tableau, f, shape, y, k1, [x.view(B, 1).expand(B, d) for x in h_of],
                  M, recorded)
    grad = torch.enable_grad() if recorded else contextlib.nullcontext()
    out = RowOutputs(eng, clock, T, y, M, rel)
    slots = [(t_of[m], h_of[m], t_of[m + 1], mx_of[m], out.due[m]) for m in range(M)]

    next_out = torch.ones(B, **lng)
    n_acc = torch.zeros(B, **lng)
    bad = None  # consecutive inf/NaN error estimates, from the first one on
    code = torch.zeros(B, **lng)  # state + _N * attempts (above)
    info = torch.empty(4, **f64)
    info_flags, info_err, info_h = info[:2], info[2], info[3]
    # running, step too small: two pairs, one per parity of the iteration (`active` is
    # the last iteration's `running`)
    flag_pairs = [(x, *x.unbind(0)) for x in torch.empty(2, 2, B, dtype=torch.bool,
                                                          device=dev).unbind(0)]
    tiny = 16.0 * eps
    nonneg, nonpos = min(t0, t_end) >= 0.0, max(t0, t_end) <= 0.0  # the sign of every t
    # while every step is shorter than `gap`, no step reaches two outputs (the step grows at
    # most 1% by the last-step rule, the tolerances are far below the 1% kept here)
    Ts_next = torch.cat((Ts, torch.full((1,), math.inf, **f64)))  # each row's next output
    gaps = [b - a for a, b in zip(Ts.tolist(), Ts.tolist()[1:], strict=False)]
    gap = min(gaps, default=math.inf) - 64.0 * rel * max(abs(t0), abs(t_end), hmax)

    with torch.no_grad():
        # DOPRI5's check before a step: a step below the rounding of t (or 0) stops the row
        # (|h| <= tiny |t|: the shared loop's `<` with `h == 0` folded in)
        small = h.abs() <= abs(t0) * tiny
        code.masked_fill_(small, _CODE[Status.STEP_TOO_SMALL])
        h.masked_fill_(small, 0.0)
        active = ~small
        n_active = B - int(small.sum())
        one_out = float(h.abs().max()) * 1.02 < gap
        iterations = 0
        m = 0
        single = True  # every row reached at most one output per iteration since the flush
        while n_active:
            if iterations >= max_steps:  # every running row has attempted max_steps steps
                code.masked_fill_(active | small, _CODE[Status.MAX_STEPS] + _N * iterations)
                break
            iterations += 1
            t, hs, t1, mx, due = slots[m]
            # Hairer's last-step rule, per row: if t + 1.01 h passes t_end, h = t_end - t; a
            # finished row (t = t_end) so gets h = 0, a failed one has h = 0 already
            last = past(torch.add(t, h * 1.01), t_end)
            torch.where(last, t_end - t, h, out=hs)
            with grad:
                y1 = eng.step(t, hs)
            err = norm.rows(eng.error(), None, eng.y, y1, rtol, atol, eng.states())
            accepted, h_new = ctrl.decide(err, hs, active)
            done = accepted & last
            code.masked_fill_(done, _CODE[Status.OK] + _N * iterations)
            n_acc += accepted
            h_acc = hs * accepted
            torch.add(t, h_acc, out=t1).masked_fill_(done, t_end)
            a1 = t1 if nonneg else (-t1 if nonpos else t1.abs())
            torch.maximum(a1, h_acc if direction > 0 else -h_acc, out=mx)
            # outputs due in each accepted step: at or before its end (within rounding); a
            # rejected row's tolerance is no larger than its last accepted step's (or, before
            # the first, below the gap to the next output): none due
            if direction > 0:
                ts1 = torch.add(t1, mx, alpha=rel)
            else:
                ts1 = torch.add(t1, mx, alpha=-rel).neg_()
            if one_out:  # no step reaches two outputs: compare with each row's next one
                torch.le(Ts_next.index_select(0, next_out), ts1, out=due)
            else:
                single = False
                reach = torch.searchsorted(Ts, ts1, right=True)
                torch.sub(reach, next_out, out=due).clamp_(min=0).mul_(accepted)
            next_out += due
            # the checks before the next step
            flags, running, small = flag_pairs[iterations % 2]
            torch.eq(code, _RUNNING, out=running)
            torch.le(h_new if direction > 0 else -h_new, torch.mul(a1, tiny), out=small)
            small.logical_and_(running)
            torch.sum(flags, 1, dtype=torch.float64, out=info_flags)
            torch.sum(err, 0, dtype=torch.float64, out=info_err)
            (torch.amax if direction > 0 else torch.amin)(h_new, 0, out=info_h)
            n_running, n_small, err_sum, h_max = info.tolist()  # the one host sync
            one_out = abs(h_max) * 1.02 < gap
            active = running
            if n_small:
                code.masked_fill_(small, _CODE[Status.STEP_TOO_SMALL] + _N * iterations)
                h_new.masked_fill_(small, 0.0)
                active = running ^ small
            if bad is not None or not math.isfinite(err_sum):
                # the error estimate of some row was inf/NaN: count them from now on
                if bad is None:
                    bad = torch.zeros(B, **lng)
                bad.add_(torch.isfinite(err) < active).masked_fill_(accepted, 0)
                failed = bad >= NONFINITE_REJECTIONS
                code.masked_fill_(failed, _CODE[Status.NONFINITE] + _N * iterations)
                h_new.masked_fill_(failed, 0.0)
                active = active > failed
                small = small > failed
                n_small = n_running - int(active.sum())
            n_active = int(n_running - n_small)
            if m == M - 1 or not n_active:  # before the next slot's y is written
                with grad:
                    out.flush(next_out, single)
                single = True
            with grad:
                eng.accept(accepted)
            h = h_new
            m += 1
            if m == M:
                t_of[0].copy_(t_of[M])
                m = 0
        with grad:
            out.flush(next_out, single)

    codes = code.tolist()
    status_rows = [_STATES[c % _N] for c in codes]
    n_acc_rows = n_acc.tolist()
    n_rej = [c // _N - a for c, a in zip(codes, n_acc_rows, strict=True)]
    t_rows = t_of[m].tolist()
    stats = TrajectoryStats(n_acc_rows, n_rej, t_rows, [str(x) for x in status_rows])
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
    with grad:
        ys = out.gathered(nT, recorded)
    ys = ys.view(nT, *shape) if len(shape) else ys.view(nT)
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
        nfe=calls + eng.nfe,
        t_reached=t_reached,
        trajectories=stats,
    )
