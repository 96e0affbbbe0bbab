"""The torchdiffeq-style front door (``solvers.odeint``): the same call as torchdiffeq's, our
solvers behind it."""

from __future__ import annotations

import math

import pytest
import torch

from solvers.odeint import odeint, odeint_adjoint

F64 = torch.float64


class Spiral(torch.nn.Module):
    """A non-autonomous linear field that uses ``t`` as a tensor (``torch.sin(t)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=F64))
        self.calls = 0

    def forward(self, t, y):
        assert isinstance(t, torch.Tensor) and t.dim() == 0 and t.dtype == F64
        self.calls += 1
        return y @ self.w.T + torch.sin(t)


def _case():
    y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
    return Spiral(), y0, torch.linspace(0.0, 2.0, 5, dtype=F64)


def test_odeint_is_our_dopri5_and_agrees_with_a_tight_solve():
    f, y0, t = _case()
    ys = odeint(f, y0, t)  # torchdiffeq's defaults: dopri5, rtol 1e-7, atol 1e-9
    tight = odeint(f, y0, t, rtol=1e-12, atol=1e-12)
    assert ys.shape == (5, 2)
    assert float((ys - tight).detach().abs().max()) < 1e-6


@pytest.mark.parametrize("method, step, tol", [("rk4", 0.01, 1e-7), ("euler", 0.001, 5e-3)])
def test_fixed_step_methods_take_step_size(method, step, tol):
    f, y0, t = _case()
    tight = odeint(f, y0, t, rtol=1e-12, atol=1e-12)
    ys = odeint(f, y0, t, method=method, options={"step_size": step})
    assert float((ys - tight).detach().abs().max()) < tol


def test_t_of_length_one_returns_y0_and_its_gradient():
    f, y0, t = _case()
    ys = odeint(f, y0, t[:1])
    assert ys.shape == (1, 2) and torch.equal(ys[0], y0)
    (g,) = torch.autograd.grad(ys.sum(), y0)
    assert torch.equal(g, torch.ones_like(y0))


@pytest.mark.parametrize("seminorm", [False, True])
def test_odeint_adjoint_gives_backprops_gradient(seminorm):
    f, y0, t = _case()
    t = t.clone().requires_grad_(True)
    g_bp = torch.autograd.grad(odeint(f, y0, t, rtol=1e-10, atol=1e-10).sum(), (y0, f.w, t))
    opts = {"norm": "seminorm"} if seminorm else None
    ys = odeint_adjoint(f, y0, t, rtol=1e-10, atol=1e-10, adjoint_options=opts)
    g_adj = torch.autograd.grad(ys.sum(), (y0, f.w, t))
    for a, b in zip(g_bp, g_adj, strict=True):
        assert float((a - b).norm()) <= 1e-6 * max(1.0, float(a.norm()))


def test_the_adjoint_takes_its_own_tolerances():
    calls = {}
    for rtol in (1e-10, 1e-4):
        f, y0, t = _case()
        ys = odeint_adjoint(f, y0, t, rtol=1e-10, atol=1e-10, adjoint_rtol=rtol,
                            adjoint_atol=rtol)
        forward = f.calls
        torch.autograd.grad(ys.sum(), y0)
        calls[rtol] = f.calls - forward
    assert calls[1e-4] < calls[1e-10] / 2  # looser backward solves, fewer calls of f


def test_a_decreasing_t_solves_backwards():
    f, y0, t = _case()
    fwd = odeint(f, y0, t, rtol=1e-10, atol=1e-10)
    back = odeint(f, fwd[-1].detach(), t.flip(0), rtol=1e-10, atol=1e-10)
    assert float((back[-1] - y0).detach().abs().max()) < 1e-7


@pytest.mark.parametrize("kwargs, says", [
    ({"method": "dorpi5"}, "unknown method 'dorpi5' (did you mean 'dopri5'?)"),
    ({"method": "rk4"}, "options=dict(step_size=h)"),
    ({"options": {"perturb": True}}, "options 'perturb' not supported by dopri5"),
    ({"method": "rk4", "options": {"step_size": 0.1, "min_step": 0.01}},
     "options 'min_step' are for adaptive methods"),
    ({"options": {"controller": "pid", "safety": 0.8}},
     "options 'safety' set Hairer's controller; controller='pid' does not take them"),
    ({"options": {"controller": "bang"}}, "unknown controller 'bang'"),
    ({"options": {"step_size": 0.1}}, "'step_size' is for fixed-step methods"),
    ({"event_fn": lambda t, y: y[0]}, "event_fn is not supported"),
])
def test_what_differs_from_torchdiffeq_is_refused_with_a_message(kwargs, says):
    f, y0, t = _case()
    with pytest.raises(ValueError) as exc:
        odeint(f, y0, t, **kwargs)
    assert says in str(exc.value)


def test_tuple_states_and_plain_functions_for_the_adjoint_are_refused():
    f, y0, t = _case()
    with pytest.raises(TypeError, match="tuple states are not supported"):
        odeint(f, (y0, y0), t)
    with pytest.raises(ValueError, match="must be an nn.Module, or pass adjoint_params"):
        odeint_adjoint(lambda tt, y: -y, y0, t)
    w = torch.tensor(0.5, dtype=F64, requires_grad=True)
    ys = odeint_adjoint(lambda tt, y: -w * y, y0, t, adjoint_params=(w,))
    (gw,) = torch.autograd.grad(ys[-1].sum(), w)  # d/dw of y0 e^{-w t} at t = 2, summed
    assert math.isclose(float(gw), -2.0 * math.exp(-1.0) * 1.0, rel_tol=1e-5)


def test_a_solve_that_stops_raises_with_its_status():
    f, y0, t = _case()
    with pytest.raises(RuntimeError, match=r"dopri5: the solve stopped at t = .* \(max_steps\)"):
        odeint(f, y0, t, options={"max_num_steps": 3})


def test_it_matches_torchdiffeq_on_the_same_call():
    torchdiffeq = pytest.importorskip("torchdiffeq", reason="the peers extra")
    f, y0, t = _case()
    ours = odeint(f, y0, t)
    theirs = torchdiffeq.odeint(f, y0, t)
    assert float((ours - theirs).detach().abs().max()) < 1e-6


class Counting(Spiral):
    """A field with torchdiffeq's step callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, float, float]] = []

    def callback_step(self, t0, y0, dt):
        assert t0.dim() == 0 and dt.dim() == 0 and y0.shape == (2,)
        self.events.append(("step", float(t0), float(dt)))

    def callback_accept_step(self, t0, y0, dt):
        self.events.append(("accept", float(t0), float(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.events.append(("reject", float(t0), float(dt)))


def test_step_callbacks_are_called_as_torchdiffeq_calls_them():
    f = Counting()
    y0 = torch.tensor([4.0, 0.0], dtype=F64)
    t = torch.linspace(0.0, 6.0, 4, dtype=F64)
    odeint(f, y0, t, rtol=1e-5, atol=1e-8)
    kinds = [e[0] for e in f.events]
    assert kinds[::2] == ["step"] * (len(kinds) // 2)
    assert set(kinds[1::2]) <= {"accept", "reject"}
    accepted = [e for e in f.events if e[0] == "accept"]
    assert accepted[0][1] == 0.0 and sum(e[2] for e in accepted) == pytest.approx(6.0)


def test_step_bounds_first_step_and_the_pid_controller():
    f, y0, t = _case()
    ref = odeint(f, y0, t, rtol=1e-10, atol=1e-10)
    for options in ({"max_step": 0.05}, {"min_step": 1e-6}, {"first_step": 1e-4},
                    {"controller": "pid"}, {"safety": 0.8, "ifactor": 5.0, "dfactor": 0.3}):
        ys = odeint(f, y0, t, options=options)
        assert float((ys - ref).detach().abs().max()) < 1e-5, options
    bounded = Counting()
    odeint(bounded, y0.detach(), t, options={"max_step": 0.05})
    assert max(e[2] for e in bounded.events if e[0] == "accept") <= 0.05
    first = Counting()
    odeint(first, y0.detach(), t, options={"first_step": 1e-4})
    assert first.events[0] == ("step", 0.0, pytest.approx(1e-4))
    with pytest.raises(RuntimeError, match="step_too_small"):
        odeint(f, y0, t, rtol=1e-12, atol=1e-12, options={"min_step": 0.1})
