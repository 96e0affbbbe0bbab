"""Every gradient mode with every built-in torch solver on fields that ignore one of their
inputs: ``y`` (``f(t)`` with parameters), the parameters, ``t`` (autonomous), or all of them
(a constant field). Such an ``f``'s output has no graph through what it ignores, and a
vector-Jacobian product over it must give zeros, not raise. Each gradient, w.r.t. ``y0``, the
parameters and ``t``, is checked against autograd through the closed-form solution."""

from __future__ import annotations

import pytest
import torch

from harness import plugins, registry
from solvers.gradients import check_mode, odeint

plugins.load_defaults()
F64 = torch.float64
W = torch.tensor([0.7, -0.3], dtype=F64)
C = torch.tensor([0.5, -1.5], dtype=F64)
WEIGHTS = torch.tensor([[0.3, -0.2], [1.1, 0.4], [-0.6, 0.9], [0.25, 0.5]], dtype=F64)


def _t(t):
    return t if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=F64)


class Field(torch.nn.Module):
    def __init__(self, ignores: str) -> None:
        super().__init__()
        self.ignores = ignores
        self.w = torch.nn.Parameter(W.clone())

    def forward(self, t, y):
        if self.ignores == "y":  # f(t) with parameters
            return self.w * torch.exp(_t(t)) + 0 * y.detach()
        if self.ignores == "params":  # w is unused
            return -y + torch.sin(_t(t))
        if self.ignores == "t":  # autonomous
            return self.w * y
        return C.expand_as(y).clone()  # a constant: ignores y, t and w


def exact(ignores: str, y0, w, t):
    """The solution at the times ``t``, differentiable in ``y0``, ``w`` and ``t``."""
    s = (t - t[0])[:, None]
    if ignores == "y":
        return y0 + w * (torch.exp(t)[:, None] - torch.exp(t[0]))
    if ignores == "params":  # y' = -y + sin t: y = (y0 - p(t0)) e^-(t-t0) + p(t)
        p = (torch.sin(t) - torch.cos(t))[:, None] / 2
        return (y0 - p[0]) * torch.exp(-s) + p + 0 * w
    if ignores == "t":
        return y0 * torch.exp(w * s)
    return y0 + C * s + 0 * w


TOL = {"dopri5": 1e-7, "dopri5-pt": 1e-7, "rk4": 1e-6, "euler": 3e-2}


@pytest.mark.parametrize("t_grad", [False, True], ids=["t-fixed", "t-grad"])
@pytest.mark.parametrize("ignores", ["y", "params", "t", "everything"])
@pytest.mark.parametrize("mode", ["backprop", "adjoint", "adjoint-seminorm", "checkpoint"])
@pytest.mark.parametrize("name", list(TOL))
def test_a_field_that_ignores_an_input(name, mode, ignores, t_grad):
    solver = registry.make_solver(name)
    try:
        check_mode(solver, mode)
    except ValueError as exc:
        pytest.skip(str(exc))
    f = Field(ignores)
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 0.7, 1.0], dtype=F64, requires_grad=t_grad)
    kw = {"rtol": 1e-10, "atol": 1e-10} if solver.adaptive else {"n_steps": 300}
    gs = odeint(solver, f, y0, t, mode=mode, params=[f.w], **kw)
    inputs = [y0, f.w] + ([t] if t_grad else [])
    got = torch.autograd.grad((gs.ys * WEIGHTS).sum(), inputs, allow_unused=True)

    w = W.clone().requires_grad_(True)
    t_ref = t.detach().clone().requires_grad_(t_grad)
    y0_ref = y0.detach().clone().requires_grad_(True)
    ref_inputs = [y0_ref, w] + ([t_ref] if t_grad else [])
    want = torch.autograd.grad((exact(ignores, y0_ref, w, t_ref) * WEIGHTS).sum(), ref_inputs,
                               allow_unused=True)
    for what, g, r in zip(["y0", "params", "t"], got, want, strict=False):
        g = torch.zeros_like(inputs[0 if what == "y0" else 1 if what == "params" else 2]) \
            if g is None else g
        r = torch.zeros_like(g) if r is None else r
        assert torch.isfinite(g).all(), what
        scale = max(float(r.norm()), 1.0)
        assert float((g - r).norm()) <= TOL[name] * scale, (what, g, r)
