"""The learned (MLP) problem: fixed weights, torch and numpy agree, gradients flow."""

from __future__ import annotations

import numpy as np
import torch

from problems import learned


def test_weights_are_fixed_by_the_seed():
    a, b = learned.mlp_weights(), learned.mlp_weights()
    assert learned.mlp_weights_sha256(a) == learned.mlp_weights_sha256(b)
    assert {k: v.shape for k, v in a.items()} == {
        "w1": (32, 3),
        "b1": (32,),
        "w2": (32, 32),
        "b2": (32,),
        "w3": (2, 32),
        "b3": (2,),
    }


def test_torch_field_matches_the_numpy_field_used_for_the_reference():
    p = learned.build_mlp()
    rhs = learned.mlp_numpy_rhs(learned.mlp_weights())
    for t, y in [(0.0, [1.0, -0.5]), (2.5, [-1.3, 0.7]), (5.0, [0.2, 2.0])]:
        got = p.f(t, torch.tensor(y, dtype=torch.float64)).detach().numpy()
        np.testing.assert_allclose(got, rhs(t, np.array(y)), rtol=1e-13, atol=1e-15)


def test_the_field_depends_on_time():
    p = learned.build_mlp()
    assert not torch.allclose(p.f(0.0, p.y0), p.f(3.0, p.y0))


def test_gradients_reach_the_parameters():
    p = learned.build_mlp()
    p.f(torch.tensor(1.0, dtype=torch.float64), p.y0).sum().backward()
    params = list(p.f.parameters())
    assert sum(q.numel() for q in params) == p.extra["n_params"] == 1250
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in params)


# --- weights shipped as data, and the hard MLP ------------------------------------------------

import json  # noqa: E402

import pytest  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from problems import make_weights, references  # noqa: E402


@pytest.mark.parametrize("spec", learned.SPECS, ids=lambda s: s.name)
def test_shipped_weights_are_what_the_script_draws(spec):
    shipped = learned.load_weights(spec.name)
    drawn = learned.draw_weights(spec)
    for k in learned.WEIGHT_KEYS:
        np.testing.assert_array_equal(shipped[k], drawn[k])
    assert make_weights.main(["--check", spec.name]) == 0


def test_the_mlp_weights_are_the_ones_its_reference_was_made_with():
    stored = references.load("mlp")
    assert stored.meta["weights_sha256"] == learned.mlp_weights_sha256(learned.mlp_weights())


def test_tampered_weights_are_refused(tmp_path):
    record = json.loads(learned.weights_path("mlp").read_text())
    record["w2"][3][4] += 1e-12
    path = tmp_path / "mlp.json"
    path.write_text(json.dumps(record))
    with pytest.raises(references.ReferenceDataError, match="checksum"):
        learned.load_weights("mlp", path)


def test_mlp_hard_makes_an_adaptive_solver_work_much_harder_without_stiffness():
    nfe, rho = {}, {}
    for spec in learned.SPECS:
        w = learned.load_weights(spec.name)
        rhs, jac = learned.mlp_numpy_rhs(w), learned.mlp_numpy_jac(w)
        sol = solve_ivp(rhs, (0.0, spec.t_end), spec.y0, method="RK45", rtol=1e-6, atol=1e-8)
        assert sol.success
        nfe[spec.name] = sol.nfev
        rho[spec.name] = max(np.abs(np.linalg.eigvals(jac(t, y))).max()
                             for t, y in zip(sol.t, sol.y.T, strict=True))
        steps = np.diff(sol.t)
        # explicit RK45 stays in its stability region: h * rho well below ~3
        assert np.median(steps) * rho[spec.name] < 1.5
    assert nfe["mlp-hard"] > 10 * nfe["mlp"]
    assert rho["mlp-hard"] > 10 * rho["mlp"]


@pytest.mark.parametrize("spec", learned.SPECS, ids=lambda s: s.name)
def test_numpy_jacobian_matches_finite_differences(spec):
    w = learned.load_weights(spec.name)
    rhs, jac = learned.mlp_numpy_rhs(w), learned.mlp_numpy_jac(w)
    y, t, h = np.array([0.3, -0.7]), 1.3, 1e-6
    fd = np.stack([(rhs(t, y + h * e) - rhs(t, y - h * e)) / (2 * h) for e in np.eye(2)], axis=1)
    np.testing.assert_allclose(jac(t, y), fd, rtol=1e-6, atol=1e-8)


def test_mlp_hard_torch_field_matches_numpy():
    p = learned.build_mlp_hard()
    rhs = learned.mlp_numpy_rhs(learned.load_weights("mlp-hard"))
    for t, y in [(0.0, [1.0, -0.5]), (2.5, [-1.3, 0.7])]:
        got = p.f(t, torch.tensor(y, dtype=torch.float64)).detach().numpy()
        np.testing.assert_allclose(got, rhs(t, np.array(y)), rtol=1e-13, atol=1e-14)


# --- spiral-learned: a field that training produced -------------------------------------------

import dataclasses  # noqa: E402

from harness.measure.nfe import Deadline  # noqa: E402
from harness.suite import Case  # noqa: E402
from training import make_fields  # noqa: E402
from training.tasks import SPIRAL  # noqa: E402

SL = learned.SPIRAL_LEARNED


def _trajectory_error(weights) -> float:
    """Mean |y - y_true| of the field's solution from y0 over the spiral's observations."""
    t, ys = SPIRAL.true_trajectory()
    sol = solve_ivp(learned.cube_numpy_rhs(weights), (0.0, SL.t_end), SL.y0, method="DOP853",
                    t_eval=t, rtol=1e-8, atol=1e-10)
    assert sol.success
    return float(np.mean(np.abs(sol.y.T - ys)))


def test_spiral_learned_weights_load_and_match_their_checksum():
    w = learned.load_cube_weights(SL.name)
    record = json.loads(learned.weights_path(SL.name).read_text())
    assert learned.cube_weights_sha256(w) == record["sha256"]
    assert {k: v.shape for k, v in w.items()} == {
        "w1": (50, 2), "b1": (50,), "w2": (2, 50), "b2": (2,)
    }
    trainer = record["trainer"]
    assert trainer["task"] == SL.task == "spiral"
    assert trainer["iterations"] == SL.iterations
    assert record["command"] == learned.FIELDS_COMMAND
    for key in ("solver", "grad_mode", "rtol", "atol", "run_seed", "weight_seed", "torch",
                "loss_final", "val_err"):
        assert key in trainer, key


def test_spiral_learned_trains_the_spec_that_the_problem_names():
    assert make_fields.SPIRAL.name == SL.name
    assert make_fields.SPIRAL.iterations == SL.iterations
    assert SL.y0 == SPIRAL.system.y0 and SL.t_end == SPIRAL.system.t_end


def test_tampered_trained_weights_are_refused(tmp_path):
    record = json.loads(learned.weights_path(SL.name).read_text())
    record["w1"][3][1] += 1e-12
    path = tmp_path / "spiral-learned.json"
    path.write_text(json.dumps(record))
    with pytest.raises(references.ReferenceDataError, match="checksum"):
        learned.load_cube_weights(SL.name, path)


def test_spiral_learned_reference_matches_a_fresh_tight_solve():
    w = learned.load_cube_weights(SL.name)
    stored = references.load("spiral_learned")
    assert stored.meta["weights_sha256"] == learned.cube_weights_sha256(w)
    sol = solve_ivp(learned.cube_numpy_rhs(w), (0.0, SL.t_end), SL.y0, method="LSODA",
                    jac=learned.cube_numpy_jac(w), t_eval=SL.t, rtol=1e-11, atol=1e-13)
    assert sol.success
    np.testing.assert_allclose(sol.y.T, stored.ys, rtol=1e-7, atol=1e-8)


def test_the_trained_field_follows_the_true_spiral_and_an_untrained_one_does_not():
    trained = _trajectory_error(learned.load_cube_weights(SL.name))
    torch.manual_seed(make_fields.train_seeds(make_fields.SPIRAL)[0])
    untrained = _trajectory_error(make_fields.weights_of(SPIRAL.make_field()))
    assert trained < 0.2 < 1.0 < untrained
    # and the file's record of it is what the weights give (its val_err: our dopri5, rtol 1e-7)
    stored = json.loads(learned.weights_path(SL.name).read_text())["trainer"]["val_err"]
    assert abs(trained - stored) < 1e-3


def test_spiral_learned_gradients_reach_the_parameters():
    p = learned.build_spiral_learned()
    p.f(0.0, p.y0).sum().backward()
    params = list(p.f.parameters())
    assert sum(q.numel() for q in params) == p.extra["n_params"] == 252
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in params)


@pytest.mark.slow  # the train case's evaluation after training takes most of it
def test_make_fields_trains_step_for_step_as_the_harness_train_case():
    spec = make_fields.SPIRAL
    case = Case(kind="train", problem=spec.task, solver=spec.solver, grad_mode=spec.grad_mode,
                rtol=spec.rtol, atol=spec.atol, batch=spec.batch, iterations=3)
    from training.loop import run_train_case

    _, records = run_train_case(case, Deadline(None), seed=spec.run_seed)
    ours = make_fields.train(dataclasses.replace(spec, iterations=3))
    assert ours.losses == [r["loss"] for r in records]  # bit for bit


def test_a_written_record_reads_back_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    field = SPIRAL.make_field()
    trained = make_fields.Trained(field=field, losses=[0.2, 0.1], val_err=1.0, seconds=0.0,
                                  seeds=(0, 1))
    path = tmp_path / "w.json"
    path.write_text(json.dumps(make_fields.record_for(make_fields.SPIRAL, trained)))
    back = learned.load_cube_weights(SL.name, path)
    want = make_fields.weights_of(field)
    for k in learned.CUBE_KEYS:
        np.testing.assert_array_equal(back[k], want[k])


def test_check_reports_shared_digits():
    w = learned.load_cube_weights(SL.name)
    assert make_fields.shared_digits(w, w) == float("inf")
    scale = max(np.abs(v).max() for v in w.values())
    nudged = {**w, "b2": w["b2"] + 1e-9 * scale}
    assert make_fields.shared_digits(w, nudged) == pytest.approx(9.0, abs=0.01)


def test_the_problem_field_computes_what_the_training_network_computes():
    torch.manual_seed(3)
    net = SPIRAL.make_field()
    with torch.no_grad():  # move the weights off their init so biases are not all zero
        for q in net.parameters():
            q.add_(0.1 * torch.randn_like(q))
    f = learned.CubeMLPField(make_fields.weights_of(net), torch.float64, "cpu")
    y = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(f(0.0, y), net(0.0, y), rtol=0.0, atol=0.0)
