"""The saved-bytes probe, and what it shows: the adjoint's memory does not grow with the steps,
backprop's grows linearly, checkpointing's by one state per step. Deterministic byte counts."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from harness.measure.saved import SavedBytes
from solvers.gradients import odeint
from solvers.resnet import EulerResNetSolver
from solvers.rk import RungeKutta
from solvers.tableaux import RK4

BATCH, DIM = 8, 2
STATE_BYTES = BATCH * DIM * 8  # one float64 state


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Field(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(DIM, 16), nn.Tanh(), nn.Linear(16, DIM)).double()

    def forward(self, t, y):
        return self.net(y)


def _measure(solver, mode: str, n_steps: int) -> tuple[int, int]:
    """(bytes held between forward and backward, peak over forward + backward)."""
    f = Field()
    y = torch.randn(BATCH, DIM, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with SavedBytes() as probe:
        gs = odeint(solver, f, y, t, mode=mode, n_steps=n_steps)
        held = probe.live_bytes
        torch.autograd.grad(gs.ys[-1].sum(), (y, *f.parameters()))
    del gs
    gc.collect()
    assert probe.live_bytes == 0  # everything saved was released with the graph
    return held, probe.peak_bytes


RK4_SOLVER = RungeKutta(RK4, name="rk4", adaptive=False)


def test_probe_counts_each_storage_once_and_releases_it() -> None:
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    with SavedBytes() as probe:
        y = (x * x).sum()  # x saved twice, one storage
        assert probe.live_bytes == 8000 and probe.n_saved == 2
        z = (x[:10] * 3.0).exp().sum()  # exp saves its 10-element result
        assert probe.live_bytes == 8000 + 80
        y.backward()
        assert probe.live_bytes == 80 and probe.peak_bytes == 8080
        del z
        gc.collect()
        assert probe.live_bytes == 0
    assert probe.total_bytes == 8080


@pytest.mark.parametrize("solver", [RK4_SOLVER, EulerResNetSolver()], ids=["rk4", "euler"])
def test_adjoint_saved_bytes_do_not_grow_with_steps(solver) -> None:
    found = {n: _measure(solver, "adjoint", n) for n in (10, 100, 1000)}
    assert found[10] == found[100] == found[1000]
    params = sum(p.numel() for p in Field().parameters()) * 8
    assert found[10][0] == 2 * STATE_BYTES + 16 + params  # ys, t and the parameters


def test_backprop_saved_bytes_grow_linearly_with_steps() -> None:
    b = {n: _measure(RK4_SOLVER, "backprop", n)[1] for n in (10, 100, 1000)}
    slope = (b[1000] - b[100]) / 900
    assert slope > 0 and b[100] - b[10] == pytest.approx(90 * slope, rel=1e-3)
    assert b[1000] / b[100] == pytest.approx(10, rel=0.1)


def test_checkpoint_saved_bytes_grow_by_one_state_per_step() -> None:
    c = {n: _measure(RK4_SOLVER, "checkpoint", n) for n in (10, 100, 1000)}
    assert c[1000][1] - c[100][1] == 900 * STATE_BYTES
    assert c[100][1] - c[10][1] == 90 * STATE_BYTES
    back_1000 = _measure(RK4_SOLVER, "backprop", 1000)[1]
    adj = _measure(RK4_SOLVER, "adjoint", 1000)[1]
    assert adj < c[1000][1] < back_1000 / 10
