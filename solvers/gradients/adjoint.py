"""``adjoint`` and ``adjoint-seminorm``: the continuous adjoint, solved backwards in time.

"Optimise-then-discretise" (Chen, Rubanova, Bettencourt, Duvenaud, "Neural ordinary
differential equations", NeurIPS 2018, Algorithm 1; Pontryagin's adjoint). The forward pass
solves without recording and keeps only ``ys`` (``ys[0]`` is ``y0``), ``t`` and the parameters
(``ctx.save_for_backward``, so a saved-tensor probe counts them): memory does not grow with the
steps; the backward pass holds one evaluation's graph of ``f`` at a time (for its VJP). The
backward pass integrates, from each output time ``t_i`` back to ``t_{i-1}``, the augmented
state ``z = [y, a, a_theta, a_t]``::

    dy/dt       =  f(t, y)
    da/dt       = -a^T df/dy          (a = dL/dy(t))
    da_theta/dt = -a^T df/dtheta      (a_theta(t_0) = dL/dtheta)
    da_t/dt     = -a^T df/dt          (only when t requires grad)

with the *same* solver and tolerances as the forward solve. The three vector-Jacobian products
come from one call of ``f`` with ``y.detach().requires_grad_()`` and one vector-Jacobian
product by the autograd engine (:func:`solvers.gradients.vjp.vjp`, the values of
``torch.autograd.grad`` with less Python per call), so every backward evaluation is one call
of the ``f`` passed in, which the harness's counter sees. At each output time the solve
restarts from the stored ``ys[i-1]`` (not the backward-integrated ``y``, which drifts) and adds
``dL/dy(t_{i-1})`` to ``a``. The time gradients: ``dL/dt_i = <dL/dy(t_i), f(t_i, y_i)>`` (one
more call of ``f`` each), subtracted from ``a_t`` on the way, whose final value is ``dL/dt_0``.

The gradient is that of the exact solution, computed to the solver's tolerance; it differs from
backprop's (the gradient of the discrete solution) by an amount that shrinks with the tolerance.

Error control of the backward solves (adaptive solvers): a *mixed* norm, the worst of the RMS
norms of the channels (as torchdiffeq's ``_mixed_norm``), with ``y`` and ``a`` measured per
trajectory of a batch like the forward solve (``state_dim = y0.shape[-1]``), the parameter
gradient as one channel per parameter tensor (a weight matrix, a bias), ``a_t`` as one; passed
as ``solve(..., norm=Seminorm(...))`` (:mod:`solvers.norms`), so an adaptive solver needs the
``norm`` capability.
``adjoint-seminorm`` drops the ``a_theta`` and ``a_t`` channels from the norm: they never
feed back into the dynamics, so their local error does not propagate and need not limit the
step (Kidger, Chen, Lyons, "Hey, that's not an ODE: faster ODE adjoints via seminorms", ICML
2021). With many parameters the ``a_theta`` channels can be what limits the plain adjoint's
steps, and the seminorm then saves backward steps; where ``y`` and ``a`` limit them (fast
dynamics), it saves little.

Fixed-step solvers (euler, rk4) step backwards on the *reversed forward grid*: the backward
solve over ``[t_{i-1}, t_i]`` steps through the forward grid points strictly inside it (plus
the two ends), so ``n_steps`` means the same thing both ways: the same ``n_steps`` uniform steps
over the whole span, walked in reverse. When the output times lie on the grid the backward steps
are exactly the forward steps reversed. This is still the continuous adjoint discretised, not
backprop's discrete adjoint: each backward step evaluates the Jacobian at the backward
reconstruction of ``y``, so for Euler (order 1) the two gradients differ by O(h), for RK4 by
O(h^4). A plugin fixed-step solver without the ``step_grid`` capability gets
``max(1, round(n_steps * |t_i - t_{i-1}| / |t_N - t_0|))`` uniform steps per interval.
``adjoint-seminorm`` equals ``adjoint`` for fixed-step solvers.
"""

from __future__ import annotations

import torch

from solvers.base import Capability, Solution
from solvers.gradients.common import Run, capabilities_of
from solvers.gradients.vjp import flatten, vjp
from solvers.norms import Seminorm, check_channels
from solvers.output import fixed_grid


def _interval_grid(forward: list[float], a: float, b: float, eps: float) -> list[float]:
    """The forward grid points strictly between ``a`` and ``b``, with the ends, from a to b."""
    lo, hi = min(a, b), max(a, b)
    tol = 8.0 * eps * max(abs(lo), abs(hi), hi - lo)
    pts = [lo] + [x for x in forward if lo + tol < x < hi - tol] + [hi]
    pts = sorted(set(pts))
    pts[0], pts[-1] = lo, hi
    return pts[::-1] if a > b else pts


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, run: Run, seminorm: bool, y0: torch.Tensor, t: torch.Tensor, *params: torch.Tensor
    ) -> torch.Tensor:
        sol = run.solve(run.f, y0, t)
        run.solution = sol
        ctx.run = run
        ctx.seminorm = seminorm
        ctx.save_for_backward(sol.ys, t, *params)
        return sol.ys

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        run: Run = ctx.run
        ys, t, *params = ctx.saved_tensors
        need_t = bool(ctx.needs_input_grad[3])
        shape = ys.shape[1:]
        n = ys[0].numel()
        d = shape[-1] if len(shape) else 1
        sizes = [p.numel() for p in params]
        n_p = sum(sizes)
        times = [float(x) for x in t.tolist()]
        f = run.f
        like = ys
        stats = run.backward

        inputs_p = tuple(params)
        zeros = [None] * (1 + len(params) + int(need_t))  # for inputs f does not use

        grad_on = torch.enable_grad()  # one context object for every evaluation

        def aug(tt: float, z: torch.Tensor) -> torch.Tensor:
            with grad_on:
                yv = z[:n].view(shape)  # a fresh view: a leaf unless z is on a graph
                yv = (yv.detach() if yv.requires_grad else yv).requires_grad_(True)
                if need_t:
                    tv = torch.tensor(tt, dtype=like.dtype, device=like.device,
                                      requires_grad=True)
                    inputs = (yv, *inputs_p, tv)
                else:
                    tv, inputs = tt, (yv, *inputs_p)
                fy = f(tv, yv)
                vjps = vjp(fy, inputs, torch.neg(z[n : 2 * n]).view(shape))
            if any(v is None for v in vjps):  # f does not use some input: its VJP is zero
                vjps = tuple(_zero(zeros, k, ref, like) if v is None else v
                             for k, (v, ref) in enumerate(zip(vjps, inputs, strict=True)))
            # under no_grad (the buffered loop) nothing is recorded, fy need not be detached
            return flatten([fy.detach() if torch.is_grad_enabled() else fy, *vjps])

        extra: dict = {}
        if Capability.JACOBIAN in capabilities_of(run.solver):
            extra["jac"] = _augmented_jacobian(f, shape, n, inputs_p, need_t, like)
        adaptive = run.solver.adaptive
        if adaptive:
            channels = [(0, n, d), (n, 2 * n, d)]
            if not ctx.seminorm:
                for o, size in zip(_offsets(sizes), sizes, strict=True):
                    channels.append((2 * n + o, 2 * n + o + size, size))
                if need_t:
                    channels.append((2 * n + n_p, 2 * n + n_p + 1, 1))
            # checked once: the backward solves share one Segments (and its index tensors)
            extra["norm"] = Seminorm(check_channels(channels, 2 * n + n_p + int(need_t)))
        kwargs = dict(run.backward_kwargs or run.solve_kwargs)
        n_steps = kwargs.pop("n_steps", None)
        forward_grid = None
        if not adaptive and n_steps is not None:
            forward_grid, _ = fixed_grid(times[0], times[-1], n_steps)
        use_grid = not adaptive and Capability.STEP_GRID in capabilities_of(run.solver)
        eps = torch.finfo(like.dtype).eps

        a = g[-1].reshape(-1)
        a_p = torch.zeros(n_p, dtype=like.dtype, device=like.device)
        a_t = torch.zeros(1, dtype=like.dtype, device=like.device)
        grad_t = torch.zeros_like(t) if need_t else None
        for i in range(len(times) - 1, 0, -1):
            if need_t:
                d_ti = (g[i] * f(times[i], ys[i])).sum()
                grad_t[i] = d_ti
                a_t = a_t - d_ti
            parts = [ys[i].reshape(-1), a, a_p] + ([a_t] if need_t else [])
            z = torch.cat(parts)
            pair = torch.tensor([times[i], times[i - 1]], dtype=t.dtype, device=t.device)
            step_kw: dict = {}
            if not adaptive:
                if use_grid and forward_grid is not None:
                    step_kw["step_grid"] = _interval_grid(forward_grid, times[i], times[i - 1], eps)
                elif n_steps is not None:
                    frac = abs(times[i] - times[i - 1]) / abs(times[-1] - times[0])
                    step_kw["n_steps"] = max(1, round(n_steps * frac))
            sol: Solution = run.solver.solve(aug, z, pair, **kwargs, **extra, **step_kw)
            stats.add(sol)
            zf = sol.ys[-1]
            a = zf[n : 2 * n] + g[i - 1].reshape(-1)
            a_p = zf[2 * n : 2 * n + n_p]
            if need_t:
                a_t = zf[2 * n + n_p :]
        if need_t:
            grad_t[0] = a_t[0]
        stats.done = True
        grads_p = [
            a_p[o : o + s].view_as(p)
            for o, s, p in zip(_offsets(sizes), sizes, params, strict=True)
        ]
        return (None, None, a.view(shape), grad_t, *grads_p)


def _augmented_jacobian(f, shape, n: int, params: tuple, need_t: bool, like: torch.Tensor):
    """``jac(t, z)``: the exact Jacobian ``[N, N]`` of the augmented system, for a solver that
    uses one (a Rosenbrock method; the backward solves are as stiff as the forward one).

    ``z = (y, a, a_p[, a_t])`` and ``z' = (f, -a^T df/dy, -a^T df/dp[, -a^T df/dt])``: the
    rows are those of ``f`` (the block ``J``), of the vector-Jacobian products (``-J^T`` in
    the ``a`` columns, and the second derivatives ``-a^T d2f/dy2`` in the ``y`` columns, by
    double backward); the ``a_p``, ``a_t`` columns are 0. One call of ``f`` per Jacobian, not
    counted as an evaluation of the backward pass's right-hand side."""

    def jac(tt: float, z: torch.Tensor) -> torch.Tensor:
        N = z.numel()
        with torch.enable_grad():
            zz = z.detach().reshape(-1).requires_grad_(True)
            yv, av = zz[:n].view(shape), zz[n : 2 * n].view(shape)
            tv = (torch.tensor(tt, dtype=like.dtype, device=like.device, requires_grad=True)
                  if need_t else tt)
            fy = f(tv, yv)
            inputs = (yv, *params, *((tv,) if need_t else ()))
            vjps = torch.autograd.grad(fy, inputs, -av, create_graph=True, allow_unused=True)
            parts = [fy.reshape(-1)] + [
                (torch.zeros(x.numel(), dtype=like.dtype, device=like.device) if v is None
                 else v.reshape(-1)) for v, x in zip(vjps, inputs, strict=True)]
            out = torch.cat(parts)
            eye = torch.eye(N, dtype=like.dtype, device=like.device)
            if not out.requires_grad:
                return torch.zeros(N, N, dtype=like.dtype, device=like.device)
            try:
                (rows,) = torch.autograd.grad(out, zz, eye, allow_unused=True,
                                              is_grads_batched=True)
            except RuntimeError:  # an op without a batching rule: a pass per row
                rows = torch.stack([
                    g if g is not None else torch.zeros_like(zz)
                    for g in (torch.autograd.grad(out[i], zz, retain_graph=True,
                                                  allow_unused=True)[0] for i in range(N))])
        return (torch.zeros(N, N, dtype=like.dtype, device=like.device) if rows is None
                else rows.detach())

    return jac


def _zero(zeros: list, k: int, ref: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The VJP of an input ``f`` does not use: zeros of its size, made once per backward pass."""
    if zeros[k] is None:
        zeros[k] = torch.zeros(ref.numel(), dtype=like.dtype, device=like.device)
    return zeros[k]


def _offsets(sizes: list[int]) -> list[int]:
    out, acc = [], 0
    for s in sizes:
        out.append(acc)
        acc += s
    return out


def solve(run: Run, y0: torch.Tensor, *, seminorm: bool) -> tuple[torch.Tensor, Solution]:
    """The adjoint solve: ``ys`` differentiable w.r.t. ``y0``, ``run.t`` and ``run.params``."""
    ys = _Adjoint.apply(run, seminorm, y0, run.t, *run.params)
    return ys, run.solution  # type: ignore[return-value]
