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
