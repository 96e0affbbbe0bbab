"""Table 1 in miniature (training.digits): the models, their equivalences and what a case
measures, on a tiny task (width 8, 3 blocks, a few iterations)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

import training.digits as digits
from harness import plugins, registry
from harness.results import COLUMN_NAMES, RECORD_FIELDS
from harness.suite import Case
from solvers.gradients import check_mode
from training.digits import (
    DIGITS,
    MODELS,
    NO_SOLVER,
    PAPER_TABLE1,
    TABLE1,
    BlockSolve,
    DigitsTask,
    build_model,
    count_params,
    param_formula,
    run_digits_case,
    saved_bytes_scaling,
)

TINY = DigitsTask(width=8, L=3, batch_size=32)
ROW_FIELDS = {
    "model", "iterations", "iteration_reached", "epochs", "loss_first", "loss_final",
    "loss_best", "test_error", "n_params", "nfe", "nfe_backward", "nfe_iter_median",
    "nfe_backward_iter_median", "time_train_s", "time_iter_median_s", "time_epoch_s",
    "mem_saved_bytes", "saved_bytes_scaling", "saved_bytes_unit", "saved_bytes_per_unit",
    "status", "message", "eval_rtol", "eval_nfe", "eval_err", "eval_time_s",
}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    plugins.discover()
    yield
    torch.set_num_threads(n)


def _case(model: str, solver: str = NO_SOLVER, grad_mode: str = "backprop", **kw) -> Case:
    return Case(problem="digits", solver=solver, grad_mode=grad_mode, kind="train",
                model=model, epochs=kw.pop("epochs", 1), **kw)


def _seeded(kind: str, task: DigitsTask, solve: BlockSolve | None = None):
    torch.manual_seed(task.seed)
    return build_model(kind, task, solve).to(torch.float64)


def _batch(task: DigitsTask, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _ = task.split()
    return torch.tensor(x[:n]), torch.tensor(y[:n])


# ---------------------------------------------------------------------------------------------
# the task and the table


def test_digits_is_registered_as_a_task():
    assert registry.make_task("digits") is DIGITS
    assert DIGITS.name == "digits"
    assert DIGITS.citation and DIGITS.description


def test_split_is_stratified_seeded_and_disjoint():
    x_train, y_train, x_test, y_test = DIGITS.split()
    assert len(y_train) + len(y_test) == 1797
    assert abs(len(y_test) - DIGITS.test_fraction * 1797) <= 1
    assert set(y_test.tolist()) == set(range(10))
    assert abs(float(x_train.mean())) < 1e-12 and abs(float(x_train.std()) - 1.0) < 1e-12
    again = digits._split.__wrapped__(DIGITS.seed, DIGITS.test_fraction)
    assert all((a == b).all() for a, b in zip(DIGITS.split(), again, strict=True))


@pytest.mark.parametrize("entry", TABLE1, ids=lambda e: e.label)
def test_table1_rows_name_a_model_a_solver_and_a_mode_it_supports(entry):
    assert entry.model in MODELS
    if entry.model == "odenet":
        check_mode(registry.make_solver(entry.solver), entry.grad_mode)
        adaptive = registry.make_solver(entry.solver).adaptive
        assert (entry.rtol is not None) == adaptive and (entry.n_steps is None) == adaptive
    else:
        assert entry.solver == NO_SOLVER and entry.grad_mode == "backprop"
    assert entry.paper is None or entry.paper in {p.label for p in PAPER_TABLE1}


def test_paper_table_holds_the_published_figures():
    by = {p.label: p for p in PAPER_TABLE1}
    assert by["1-layer MLP"].test_error == pytest.approx(0.016)
    assert by["ResNet"].n_params == pytest.approx(0.60e6)
    assert by["ODE-Net"].memory == "O(1)" and by["ResNet"].memory == "O(L)"
    # LeCun et al.'s 784-300-10 MLP is the paper's 0.24 M
    assert round((784 * 300 + 300 + 300 * 10 + 10) / 1e4) * 1e4 == by["1-layer MLP"].n_params


# ---------------------------------------------------------------------------------------------
# models


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("width,n_blocks", [(8, 3), (32, 6)])
def test_parameter_count_equals_the_formula(kind, width, n_blocks):
    task = DigitsTask(width=width, L=n_blocks)
    solve = BlockSolve("euler", n_steps=n_blocks) if kind == "odenet" else None
    assert count_params(build_model(kind, task, solve)) == param_formula(kind, width, n_blocks)


def test_docstring_counts_are_the_default_task_s():
    w, n = DIGITS.width, DIGITS.L
    counts = {k: param_formula(k, w, n) for k in MODELS}
    assert counts == {"mlp": 2410, "resnet": 15082, "odenet": 4522}
    for c in counts.values():
        assert f"{c:,}" in digits.__doc__


def test_odenet_with_euler_is_the_tied_resnet_to_the_bit():
    """h <- h + (1/L) g(h), L times, with one g: logits and every gradient identical."""
    task = TINY
    model = _seeded("odenet", task, BlockSolve("euler", "backprop", n_steps=task.L))
    x, y = _batch(task)
    g = model.body.field.g

    def tied(x):
        h = model.stem(x)
        for _ in range(task.L):
            h = torch.add(h, g(h), alpha=1.0 / task.L)
        return model.head(h)

    logits = model(x)
    assert torch.equal(logits, tied(x))
    F.cross_entropy(logits, y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    F.cross_entropy(tied(x), y).backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters(), strict=True))


@pytest.mark.parametrize("kind,solve,match", [
    ("mlp", BlockSolve("dopri5"), "no ODE block"),
    ("resnet", BlockSolve(NO_SOLVER, "adjoint"), "backprop"),
    ("mlp", BlockSolve(NO_SOLVER, n_steps=3), "n_steps"),
    ("odenet", BlockSolve(NO_SOLVER), "needs a solver"),
    ("odenet", None, "needs a solver"),
    ("convnet", None, "mlp, resnet, odenet"),
])
def test_bad_model_settings_are_refused_with_what_is_allowed(kind, solve, match):
    with pytest.raises(ValueError, match=match):
        build_model(kind, TINY, solve)


@pytest.mark.parametrize("field,value,match", [
    ("optimiser", "lbfgs", "adam or sgd"),
    ("schedule", "step", "cosine or constant"),
])
def test_unknown_optimiser_or_schedule_is_refused(field, value, match):
    task = dataclasses.replace(TINY, **{field: value})
    with pytest.raises(ValueError, match=match):
        run_digits_case(_case("mlp"), task, None, max_iterations=1)


def test_sgd_with_momentum_trains_too():
    row, _ = run_digits_case(_case("mlp"), dataclasses.replace(TINY, optimiser="sgd", lr=0.1),
                             None, max_iterations=10)
    assert row["status"] == "ok" and row["loss_best"] < row["loss_first"]


def test_unsupported_gradient_mode_is_refused_up_front():
    with pytest.raises(ValueError, match="does not support"):
        build_model("odenet", TINY, BlockSolve("scipy-rk45", "adjoint", rtol=1e-3, atol=1e-3))


# ---------------------------------------------------------------------------------------------
# training


def test_row_has_the_schema_columns_and_records_the_record_fields():
    row, records = run_digits_case(_case("odenet", "rk4", n_steps=2), TINY, None,
                                   max_iterations=3)
    assert set(row) == ROW_FIELDS
    assert set(row) <= set(COLUMN_NAMES)
    assert [r["iteration"] for r in records] == [0, 1, 2]
    assert all(set(r) == {name for name, _ in RECORD_FIELDS} for r in records)
    assert row["status"] == "ok" and row["iteration_reached"] == row["iterations"] == 3
    assert records[0]["saved_bytes"] > 0 and records[1]["saved_bytes"] is None
    assert row["mem_saved_bytes"] == records[0]["saved_bytes"]
    assert all(r["cuda_peak_bytes"] is None for r in records)  # on the CPU
    assert 0.0 <= row["test_error"] <= 1.0


def test_two_runs_repeat_every_loss_and_another_seed_does_not():
    case = _case("odenet", "dopri5", rtol=1e-3, atol=1e-3)
    first = [r["loss"] for r in run_digits_case(case, TINY, None, max_iterations=4)[1]]
    again = [r["loss"] for r in run_digits_case(case, TINY, None, max_iterations=4)[1]]
    other = dataclasses.replace(TINY, seed=1)
    moved = [r["loss"] for r in run_digits_case(case, other, None, max_iterations=4)[1]]
    run_seed = [r["loss"] for r in run_digits_case(case, TINY, None, seed=1,
                                                    max_iterations=4)[1]]
    assert first == again
    assert first != moved and first != run_seed


def test_training_leaves_the_global_generator_alone():
    state = torch.random.get_rng_state()
    run_digits_case(_case("mlp"), TINY, None, max_iterations=1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_mlp_learns_the_digits_in_two_epochs():
    row, records = run_digits_case(_case("mlp", epochs=2), DIGITS, None)
    assert row["iterations"] == len(records) == 2 * (len(DIGITS.split()[1]) // 64)
    assert row["loss_best"] < 0.3 * row["loss_first"]
    assert row["test_error"] < 0.2  # chance is 0.9
    assert row["nfe"] is None and row["nfe_iter_median"] is None
    assert row["saved_bytes_unit"] == "model" and row["saved_bytes_per_unit"] is None
    assert row["time_epoch_s"] > 0 and row["epochs"] == 2


@pytest.mark.parametrize("solver,mode,forward,backward", [
    ("rk4", "backprop", 4, 0),  # autograd replays the graph: no calls of f
    ("rk4", "adjoint", 4, 4),  # the augmented solve on the reversed forward grid
    ("euler", "backprop", 1, 0),
    ("euler", "adjoint", 1, 1),
])
def test_fixed_step_nfe_records_are_stages_times_steps(solver, mode, forward, backward):
    n = TINY.L
    row, records = run_digits_case(_case("odenet", solver, mode, n_steps=n), TINY, None,
                                   max_iterations=3)
    assert [(r["nfe_forward"], r["nfe_backward"]) for r in records] == \
        [(forward * n, backward * n)] * 3
    assert row["nfe"] == 3 * forward * n and row["nfe_backward"] == 3 * backward * n


@pytest.mark.parametrize("mode", ["backprop", "adjoint"])
def test_dopri5_nfe_records_are_six_per_step_plus_two(mode):
    """Dormand-Prince is FSAL: 6 new stages per attempted step, plus k1 and the initial-step
    probe (Hairer's HINIT); the adjoint's backward solve is a dopri5 solve too."""
    _, records = run_digits_case(_case("odenet", "dopri5", mode, rtol=1e-3, atol=1e-3), TINY,
                                 None, max_iterations=3)
    for r in records:
        assert r["nfe_forward"] >= 8 and (r["nfe_forward"] - 2) % 6 == 0
        if mode == "adjoint":
            assert r["nfe_backward"] >= 8 and (r["nfe_backward"] - 2) % 6 == 0
        else:
            assert r["nfe_backward"] == 0


def test_adaptive_case_reports_the_tolerance_ladder():
    row, _ = run_digits_case(_case("odenet", "dopri5", rtol=1e-3, atol=1e-3), TINY, None,
                             max_iterations=2)
    assert row["eval_rtol"] == list(TINY.eval_rtol)
    assert len(row["eval_nfe"]) == len(row["eval_err"]) == len(row["eval_time_s"])
    assert row["eval_nfe"] == sorted(row["eval_nfe"])
    assert row["eval_err"][-1] < row["eval_err"][0]
    assert row["saved_bytes_unit"] == "NFE"


# ---------------------------------------------------------------------------------------------
# saved bytes


@pytest.mark.parametrize("kind,solve,unit", [
    ("resnet", None, "block"),
    ("odenet", BlockSolve("rk4", "backprop", n_steps=2), "step"),
    ("odenet", BlockSolve("euler", "backprop", n_steps=2), "step"),
])
def test_backprop_saved_bytes_grow_with_depth(kind, solve, unit):
    x, y = _batch(TINY)
    scaling = saved_bytes_scaling(_seeded(kind, TINY, solve), TINY, x, y)
    assert scaling.unit == unit
    assert [p[0] for p in scaling.points] == list(TINY.saved_sizes)
    sizes = [p[1] for p in scaling.points]
    assert sizes == sorted(sizes) and scaling.slope > 0
    # linear: each further block or step saves the same bytes
    steps = [(b1 - b0) / (u1 - u0) for (u0, b0), (u1, b1)
             in zip(scaling.points, scaling.points[1:], strict=False)]
    assert max(steps) == pytest.approx(min(steps)) == pytest.approx(scaling.slope)


@pytest.mark.parametrize("solve", [
    BlockSolve("rk4", "adjoint", n_steps=2),
    BlockSolve("euler", "adjoint", n_steps=2),
    BlockSolve("dopri5", "adjoint", rtol=1e-3, atol=1e-3),
])
def test_adjoint_saved_bytes_do_not_grow(solve):
    x, y = _batch(TINY)
    scaling = saved_bytes_scaling(_seeded("odenet", TINY, solve), TINY, x, y)
    sizes = {p[1] for p in scaling.points}
    assert len(sizes) == 1  # exactly the same bytes at every depth
    assert scaling.slope in (0.0, None)  # None: dopri5 took the same NFE at every tolerance


def test_adjoint_saves_less_than_backprop_at_the_same_steps():
    x, y = _batch(TINY)
    bp = saved_bytes_scaling(_seeded("odenet", TINY, BlockSolve("rk4", n_steps=2)), TINY, x, y)
    adj = saved_bytes_scaling(_seeded("odenet", TINY, BlockSolve("rk4", "adjoint", n_steps=2)),
                              TINY, x, y)
    assert all(a[1] < b[1] for a, b in zip(adj.points, bp.points, strict=True))


# ---------------------------------------------------------------------------------------------
# failures end the case with a status


def test_a_solver_out_of_steps_ends_the_case_at_iteration_zero():
    case = _case("odenet", "dopri5", rtol=1e-3, atol=1e-3, max_steps=1)
    row, records = run_digits_case(case, TINY, None, max_iterations=5)
    assert row["status"] == "max_steps"
    assert row["message"].startswith("forward solve:")
    assert row["message"].endswith("at iteration 0")
    assert row["iteration_reached"] == 0 and records == []
    assert row["test_error"] is None and row["loss_first"] is None


def test_a_field_turning_nonfinite_ends_the_case_where_it_did(monkeypatch):
    """The field returns NaN from the 4th iteration on (euler: 2 calls an iteration)."""
    calls = {"n": 0}
    forward = digits.Autonomous.forward

    def poisoned(self, t, h):
        calls["n"] += 1
        out = forward(self, t, h)
        return out * float("nan") if calls["n"] > 2 * 3 else out

    monkeypatch.setattr(digits.Autonomous, "forward", poisoned)
    row, records = run_digits_case(_case("odenet", "euler", n_steps=2), TINY, None,
                                   max_iterations=6)
    assert row["status"] == "nonfinite"
    assert row["message"].endswith("at iteration 3")
    assert row["iteration_reached"] == len(records) == 3
    assert row["loss_final"] == records[-1]["loss"]


def test_a_deadline_that_runs_out_propagates():
    from harness.measure.nfe import CaseTimeout, Deadline

    deadline = Deadline(1e-9)
    with pytest.raises(CaseTimeout):
        run_digits_case(_case("odenet", "euler", n_steps=2), TINY, deadline, max_iterations=3)
    assert deadline.expired


def test_progress_reports_each_epoch():
    seen: list[str] = []
    run_digits_case(_case("mlp", epochs=2), TINY, None, seen.append, max_iterations=50)
    assert seen == ["epoch 1/2", "epoch 2/2"]
