"""Euler as a literal residual network.

A residual block ``h <- h + dt * f(t_k, h)`` is one explicit Euler step of ``dh/dt = f(t, h)``
(He et al., "Deep residual learning", CVPR 2016; the correspondence is the starting point of
Chen et al., "Neural ordinary differential equations", NeurIPS 2018). :class:`EulerResNet`
stacks ``n_steps`` such blocks; the ``euler`` solver builds one and runs it. Its output is
bitwise identical to the RK engine's fixed-step loop with the ``EULER`` tableau (same grid,
same fused ``add``), which a test pins down.
"""

from __future__ import annotations

import torch
from torch import nn

from solvers import dense
from solvers.base import RHS, Capability, GradMode, Request, Solution, Solver, Status, StepRecord
from solvers.output import OutputCollector, check_step_grid, fixed_grid


class ResidualBlock(nn.Module):
    """``h + dt * f(t_k, h)``: one Euler step at time ``t_k`` of size ``dt``."""

    def __init__(self, f: RHS, t_k: float, dt: float) -> None:
        super().__init__()
        self.f = f
        self.t_k = t_k
        self.dt = dt

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.add(h, self.f(self.t_k, h), alpha=self.dt)


class EulerResNet(nn.Module):
    """A stack of :class:`ResidualBlock` on the uniform grid of ``n_steps`` steps over ``[t0, t1]``.

    ``forward(h0)`` returns the list of block outputs ``[h0, h1, ..., h_n]``. ``grid`` (the
    block times ``t0 .. t1``, any spacing) replaces the uniform grid of ``n_steps``.
    """

    def __init__(
        self, f: RHS, t0: float, t1: float, n_steps: int, grid: list[float] | None = None
    ) -> None:
        super().__init__()
        if grid is None:
            self.grid, dt = fixed_grid(t0, t1, n_steps)
            dts = [dt] * n_steps
        else:
            self.grid = list(grid)
            dts = [b - a for a, b in zip(self.grid, self.grid[1:], strict=False)]
        self.blocks = nn.ModuleList(
            ResidualBlock(f, tk, dt) for tk, dt in zip(self.grid[:-1], dts, strict=True)
        )

    def forward(self, h0: torch.Tensor) -> list[torch.Tensor]:
        hs = [h0]
        for block in self.blocks:
            hs.append(block(hs[-1]))
        return hs


class EulerResNetSolver(Solver):
    """Explicit Euler with ``n_steps`` uniform steps, run as an :class:`EulerResNet`.

    Output at the requested times is linear interpolation between block outputs. Every
    gradient mode works (:mod:`solvers.gradients`): the capabilities ``record_steps`` and
    ``replay_step`` (:meth:`replay_step`) serve ``checkpoint``, ``step_grid`` the adjoint's
    reversed forward grid.
    """

    grad_modes = (
        GradMode.NONE,
        GradMode.BACKPROP,
        GradMode.ADJOINT,
        GradMode.ADJOINT_SEMINORM,
        GradMode.CHECKPOINT,
    )
    capabilities = frozenset(
        {Capability.RECORD_STEPS, Capability.REPLAY_STEP, Capability.STEP_GRID}
    )
    interpolation = "linear"

    name = "euler"
    order = 1
    adaptive = False
    kind = "explicit RK, fixed step (residual network)"
    description = "explicit Euler as a stack of residual blocks h + dt*f(t_k, h)"

    def _solve(self, request: Request) -> Solution:
        """Run the network over ``n_steps`` uniform blocks (``rtol``/``atol`` are ignored).

        Options: ``step_grid`` (explicit block times from ``t[0]`` to ``t[-1]`` instead of
        ``n_steps`` uniform ones), ``record_steps`` (fill ``Solution.steps``, see
        ``RungeKutta``). A state that is not finite is the base's ``nonfinite``.
        """
        f, y0, times = request.f, request.y0, request.times
        n_steps, max_steps = request.n_steps, request.max_steps
        grid = None
        step_grid = request.options.get("step_grid")
        if step_grid is not None:
            grid = check_step_grid(step_grid, times[0], times[-1])
            n_steps = len(grid) - 1
        limit = n_steps if max_steps is None else min(n_steps, max_steps)
        net = EulerResNet(f, times[0], times[-1], n_steps, grid)
        net.blocks = net.blocks[:limit]
        hs = [h.reshape(1, -1) for h in net(y0)]
        out = OutputCollector(times, hs[0], torch.finfo(y0.dtype).eps)
        for n in range(limit):
            interior = out.due(net.grid[n], net.grid[n + 1], hs[n + 1])
            if interior:
                out.put(interior, dense.linear(hs[n], hs[n + 1], [th for _, th in interior]))
        ys = out.stack(hs[0]).view(len(times), *y0.shape)
        status, message = Status.OK, ""
        if limit < n_steps:
            status = Status.MAX_STEPS
            message = f"stopped after max_steps={max_steps} of n_steps={n_steps} steps"
        steps = None
        if request.options.get("record_steps"):
            steps = [
                StepRecord(b.t_k, b.dt, net.grid[n + 1], hs[n]) for n, b in enumerate(net.blocks)
            ]
        return Solution(ys, status, message, limit, limit, 0, limit, net.grid[limit], steps)

    def replay_step(
        self,
        fv: RHS,
        rec: StepRecord,
        y: torch.Tensor,
        k1: torch.Tensor | None,
        thetas: list[float],
    ) -> tuple[torch.Tensor, None, torch.Tensor | None]:
        """Recompute one residual block from the row ``y`` (see ``RungeKutta.replay_step``)."""
        y1 = torch.add(y, fv(rec.t, y), alpha=rec.h)
        rows = dense.linear(y, y1, thetas) if thetas else None
        return y1, None, rows
