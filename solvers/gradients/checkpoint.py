"""``checkpoint``: backprop's gradient, keeping only the state at each accepted step.

The forward pass solves without recording (``no_grad``) and keeps, per accepted step, the state
``y_n`` at its start (and the carried first stage ``k1`` of an FSAL method such as DOPRI5, so the
replay costs no extra call of ``f``). The backward pass walks the steps in reverse; for each it
rebuilds the step's graph from ``y_n`` with the solver's own ops (``replay_step``: the stages,
the new state and the dense outputs that fall inside the step), backpropagates the incoming
gradient through it and drops it. This is checkpointing at every step, the simplest schedule
of Griewank & Walther ("Evaluating Derivatives", 2nd ed., SIAM 2008, ch. 12; Griewank,
"Achieving logarithmic growth of temporal and spatial complexity in reverse automatic
differentiation", 1992): memory is the stored states plus one step's graph, time about one
more forward pass. Rejected steps are not replayed: they do not touch the output. A solver
offers the mode by declaring the capabilities ``record_steps`` (``solve(..., record_steps=True)``
fills :attr:`~solvers.base.Solution.steps`) and ``replay_step`` (the method above; see
``RungeKutta.replay_step`` for its contract).

The gradient is backprop's: the same ops on the same values, only the order in which the
contributions are added differs (per-step sums of the parameter gradient are added to the total,
where backprop accumulates every stage's term into one buffer), so it equals backprop's to
round-off, not bitwise (relative differences ~1e-16 to 1e-15 in float64; a test pins
``allclose`` at 1e-12).

Memory: the states (and for an FSAL method the carried ``k1``: two rows per step, which saves
one call of ``f`` per replayed step) are passed to ``ctx.save_for_backward``, so a saved-tensor
probe counts them, plus one step's graph at a time while the backward pass runs.
"""

from __future__ import annotations

import torch

from solvers.base import Solution, StepRecord
from solvers.gradients import times
from solvers.gradients.common import Run, row_rhs
from solvers.output import OutputCollector


class _Checkpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: Run, y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        sol = run.solve(run.f, y0, run.t, record_steps=True)
        steps = sol.steps or []
        sol.steps = None  # the states live on in ctx only
        run.solution = sol
        ctx.run = run
        ctx.meta = [(r.t, r.h, r.t1, r.k1 is not None) for r in steps]
        ctx.n_params = len(params)
        ctx.n_states = len(steps)
        ctx.shape = y0.shape
        carried = [r.k1 for r in steps if r.k1 is not None]
        ctx.save_for_backward(*params, *(r.y for r in steps), *carried)
        return sol.ys

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        run: Run = ctx.run
        saved = ctx.saved_tensors
        params = saved[: ctx.n_params]
        states = saved[ctx.n_params : ctx.n_params + ctx.n_states]
        carried = iter(saved[ctx.n_params + ctx.n_states :])
        k1s = [next(carried) if has else None for (_, _, _, has) in ctx.meta]
        fv = row_rhs(run.f, ctx.shape)
        times_ = [float(x) for x in run.t.tolist()]
        g_rows = g.reshape(len(times_), -1)
        plan = OutputCollector(times_, g_rows[:1], torch.finfo(g.dtype).eps)
        assigned = [plan.assign(t0, t1) for (t0, _, t1, _) in ctx.meta]
        stats = run.backward
        grad_params = [None] * len(params)
        g_y = torch.zeros_like(g_rows[:1])
        g_k: torch.Tensor | None = None
        for n in range(ctx.n_states - 1, -1, -1):
            t0, h, t1, _ = ctx.meta[n]
            hits, interior = assigned[n]
            g_y1 = g_y
            for j in hits:
                g_y1 = g_y1 + g_rows[j : j + 1]
            rec = StepRecord(t0, h, t1, states[n], k1s[n])
            calls = _Calls(fv)
            with torch.enable_grad():
                y = states[n].detach().requires_grad_(True)
                k1 = k1s[n].detach().requires_grad_(True) if k1s[n] is not None else None
                y1, k_last, rows = run.solver.replay_step(
                    calls, rec, y, k1, [th for _, th in interior]
                )
            outs, grads = [y1], [g_y1]
            if k_last is not None and g_k is not None:
                outs.append(k_last)
                grads.append(g_k)
            if rows is not None:
                outs.append(rows)
                grads.append(g_rows[[j for j, _ in interior]])
            inputs = [y] + ([k1] if k1 is not None else []) + list(params)
            res = _grad(outs, inputs, grads)
            g_y = res[0] if res[0] is not None else torch.zeros_like(g_y)
            g_k = res[1] if k1 is not None else None
            for i, gp in enumerate(res[len(res) - len(params) :]):
                if gp is not None:
                    grad_params[i] = gp if grad_params[i] is None else grad_params[i] + gp
            stats.n_steps += 1
            stats.n_accepted += 1
            stats.nfe += calls.n
        stats.done = True
        g_y0 = (g_y + g_rows[:1]).view(ctx.shape)
        grad_params = [
            gp if gp is not None else torch.zeros_like(p)
            for gp, p in zip(grad_params, params, strict=True)
        ]
        return (None, g_y0, *grad_params)


def _grad(outs: list[torch.Tensor], inputs: list[torch.Tensor], grads: list[torch.Tensor]
          ) -> tuple[torch.Tensor | None, ...]:
    """``torch.autograd.grad(outs, inputs, grads, allow_unused=True)`` over the outputs that
    have a graph: one without (the carried last stage of a field that ignores ``y``, a constant
    field's whole step) contributes nothing, where autograd would raise."""
    live = [(o, g) for o, g in zip(outs, grads, strict=True) if o.requires_grad]
    if not live:
        return (None,) * len(inputs)
    return torch.autograd.grad([o for o, _ in live], inputs, [g for _, g in live],
                               allow_unused=True)


class _Calls:
    """Counts the solver's own calls of ``f`` during a replay (the harness counts too)."""

    def __init__(self, fv) -> None:
        self.fv = fv
        self.n = 0

    def __call__(self, tt: float, yy: torch.Tensor) -> torch.Tensor:
        self.n += 1
        return self.fv(tt, yy)


def solve(run: Run, y0: torch.Tensor) -> tuple[torch.Tensor, Solution]:
    """The checkpointed solve; ``t``'s gradient comes from :mod:`solvers.gradients.times`."""
    y_in = times.start(run.f, run.t, y0)
    ys = _Checkpoint.apply(run, y_in, *run.params)
    return times.outputs(run.f, run.t, ys), run.solution  # type: ignore[return-value]
