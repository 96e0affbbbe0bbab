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
