"""Training cases: determinism, a loss that falls, NFE records against an independent count,
and a solver that fails mid-training."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from harness import plugins, registry
from harness.measure.nfe import Deadline
from harness.runner import RECORDS_KEY, ProblemCache, run_case
from harness.suite import Case, Suite
from solvers.base import Solution, Solver, Status
from training import loop
from training.tasks import SPIRAL


@pytest.fixture(scope="module", autouse=True)
def _registries():
    plugins.discover()


def _case(**kw) -> Case:
    base = dict(kind="train", problem="spiral", solver="dopri5", grad_mode="adjoint",
                rtol=1e-7, atol=1e-9, batch=SPIRAL.data.batch, iterations=3)
    base.update(kw)
    return Case(**base)


def _train(case: Case, task=SPIRAL, seed: int = 0, evaluate: bool = False):
    return loop._train(case, task, Deadline(None), seed, None, evaluate=evaluate)


@pytest.mark.parametrize("mode", ["backprop", "adjoint"])
def test_same_seed_same_losses_bit_for_bit(mode):
    _, first = _train(_case(grad_mode=mode))
    _, second = _train(_case(grad_mode=mode))
    assert [r["loss"] for r in first] == [r["loss"] for r in second]
    assert [r["nfe_forward"] for r in first] == [r["nfe_forward"] for r in second]


def test_another_run_seed_draws_other_batches():
    _, a = _train(_case(iterations=3), seed=0)
    _, b = _train(_case(iterations=3), seed=1)
    assert [r["loss"] for r in a] != [r["loss"] for r in b]


def test_every_case_of_a_task_starts_from_the_same_model():
    """The first loss is the untrained model's on the first batch: the same for every solver
    and mode (to the solvers' accuracy), so that their curves compare."""
    rows = [_train(_case(grad_mode=m, iterations=1))[0]
            for m in ("backprop", "adjoint", "adjoint-seminorm")]
    rk4 = _train(_case(solver="rk4", grad_mode="backprop", rtol=None, atol=None, n_steps=9,
                       iterations=1))[0]
    firsts = [r["loss_first"] for r in rows]
    assert max(firsts) - min(firsts) < 1e-9
    assert abs(rk4["loss_first"] - firsts[0]) < 1e-5


def test_the_spiral_loss_falls_against_the_untrained_model():
    """60 iterations of the spiral: the trained field's trajectory from y0 is closer to the data
    than the untrained field's, and the training loss has fallen. Either can fail: a sign error
    in the update or a detached gradient leaves the model where it started."""
    row, records = _train(_case(grad_mode="backprop", iterations=60), evaluate=True)
    assert row["status"] == "ok"
    weight_seed, _ = loop.seeds(SPIRAL.seed, 0)
    torch.manual_seed(weight_seed)
    untrained = SPIRAL.make_field()
    t, ys = SPIRAL.true_trajectory()
    t_all, y_all = torch.tensor(t), torch.tensor(ys)
    with torch.no_grad():
        sol = registry.make_solver("dopri5").solve(untrained, y_all[0], t_all, rtol=1e-7,
                                                   atol=1e-9)
    untrained_err = float(torch.mean(torch.abs(sol.ys - y_all)))
    assert row["val_err"] < 0.8 * untrained_err
    first = sum(r["loss"] for r in records[:10]) / 10
    last = sum(r["loss"] for r in records[-10:]) / 10
    assert last < 0.8 * first


class _Counted(torch.nn.Module):
    """The task's field behind a counter of its own (independent of the harness's wrapper)."""

    calls = 0

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, t, y):
        _Counted.calls += 1
        return self.inner(t, y)


@dataclasses.dataclass(frozen=True)
class _CountedTask(type(SPIRAL)):
    def make_field(self, dtype=torch.float64, device="cpu"):
        return _Counted(super().make_field(dtype, device))


@pytest.mark.parametrize("solver,mode,setting", [
    ("dopri5", "backprop", dict(rtol=1e-6, atol=1e-8)),
    ("dopri5", "adjoint", dict(rtol=1e-6, atol=1e-8)),
    ("dopri5", "adjoint-seminorm", dict(rtol=1e-6, atol=1e-8)),
    ("rk4", "adjoint", dict(n_steps=9)),
])
def test_nfe_records_equal_an_independent_count(solver, mode, setting):
    task = _CountedTask(**{f.name: getattr(SPIRAL, f.name) for f in dataclasses.fields(SPIRAL)})
    case = _case(solver=solver, grad_mode=mode, iterations=2,
                 **{"rtol": None, "atol": None, **setting})
    counts = []
    orig = loop._iteration

    def counting_iteration(*args, **kwargs):
        before = _Counted.calls
        rec = orig(*args, **kwargs)
        counts.append(_Counted.calls - before)
        return rec

    loop._iteration = counting_iteration
    try:
        row, records = _train(case, task)
    finally:
        loop._iteration = orig
    assert row["status"] == "ok"
    assert [r["nfe_forward"] + r["nfe_backward"] for r in records] == counts
    assert row["nfe"] + row["nfe_backward"] == sum(counts)
    if mode == "backprop":
        assert all(r["nfe_backward"] == 0 for r in records)
    else:
        assert all(r["nfe_backward"] > 0 for r in records)
    if solver == "rk4":  # 9 steps of 4 stages forward, for each window
        assert all(r["nfe_forward"] == 36 for r in records)


class _FailsOnThirdSolve(Solver):
    """dopri5, except that its third solve stops with max_steps (a solver failing
    mid-training)."""

    name = "fails-third"
    adaptive = True

    def __init__(self) -> None:
        self.inner = registry.make_solver("dopri5")
        self.grad_modes = self.inner.grad_modes
        self.order = self.inner.order
        self.kind = "test"
        self.solves = 0

    def solve(self, f, y0, t, **kw) -> Solution:
        self.solves += 1
        sol = self.inner.solve(f, y0, t, **kw)
        if self.solves == 3:
            sol.status, sol.message = Status.MAX_STEPS, "gave up (test)"
        return sol


def test_a_solver_failing_mid_training_ends_the_case_with_its_status():
    registry.SOLVERS.remove("fails-third")
    registry.SOLVERS.add("fails-third", _FailsOnThirdSolve, "test")
    try:
        case = _case(solver="fails-third", grad_mode="backprop", iterations=10)
        row = run_case(case, ProblemCache(), Suite(name="t"))
    finally:
        registry.SOLVERS.remove("fails-third")
    assert row["status"] == "max_steps"
    assert row["iteration_reached"] == 2
    assert "at iteration 2" in row["message"] and "gave up (test)" in row["message"]
    assert len(row[RECORDS_KEY]) == 2
    assert math.isfinite(row["loss_first"])


def test_a_training_case_is_a_row_with_records():
    row = run_case(_case(iterations=3), ProblemCache(), Suite(name="t"))
    records = row.pop(RECORDS_KEY)
    assert row["status"] == "ok", row["message"]
    assert row["kind"] == "train" and row["task"] == "spiral" and row["model"] == "ode"
    assert row["iteration_reached"] == 3 == len(records)
    assert [r["iteration"] for r in records] == [0, 1, 2]
    assert records[0]["saved_bytes"] > 0 and records[1]["saved_bytes"] is None
    assert row["mem_saved_bytes"] == max(records[0]["saved_bytes"], records[2]["saved_bytes"])
    assert len(row["eval_nfe"]) == len(row["eval_rtol"]) == len(row["eval_err"]) > 3
    assert row["eval_nfe"] == sorted(row["eval_nfe"])  # tighter tolerance, more NFE
    assert row["n_params"] == 2 * 50 + 50 + 50 * 2 + 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_case_on_cuda_records_the_cuda_peak():
    row, records = _train(_case(device="cuda", iterations=2))
    assert row["status"] == "ok", row["message"]
    assert all(r["cuda_peak_bytes"] > 0 for r in records)
