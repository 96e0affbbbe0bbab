"""The DOPRI5 step-size rules in isolation."""

from __future__ import annotations

import math

import pytest
import torch

from solvers.control import clip_to_end, initial_step
from solvers.controllers import HairerController


def test_controller_grows_at_most_fac2_and_shrinks_at_most_fac1() -> None:
    ctrl = HairerController()
    ok, h = ctrl.decide(0.0, 1.0)
    assert ok and h == pytest.approx(10.0)
    ok, h = HairerController().decide(1e12, 1.0)
    assert not ok and h == pytest.approx(0.2)


def test_no_growth_right_after_a_rejection() -> None:
    ctrl = HairerController()
    assert not ctrl.decide(4.0, 1.0)[0]
    ok, h = ctrl.decide(1e-6, 0.5)
    assert ok and h == 0.5


def test_nonfinite_error_is_a_rejection_with_the_strongest_shrink() -> None:
    ok, h = HairerController().decide(math.nan, 2.0)
    assert not ok and h == pytest.approx(0.4)


def test_hmax_caps_the_next_step() -> None:
    ok, h = HairerController(hmax=1.5).decide(1e-8, 1.0)
    assert ok and h == 1.5


@pytest.mark.parametrize("beta", [-0.1, 0.3])
def test_beta_out_of_range_is_refused(beta: float) -> None:
    with pytest.raises(ValueError, match="beta"):
        HairerController(beta=beta)


@pytest.mark.parametrize(
    ("t", "h", "t_end", "expected"),
    [
        (0.0, 0.995, 1.0, (1.0, True)),  # 1.01 h passes the end: stretched
        (0.0, 2.0, 1.0, (1.0, True)),  # shrunk
        (0.0, 0.5, 1.0, (0.5, False)),
        (1.0, -0.995, 0.0, (-1.0, True)),  # backwards in time
    ],
)
def test_last_step_ends_exactly_at_the_final_time(t, h, t_end, expected) -> None:
    assert clip_to_end(t, h, t_end) == expected


def test_initial_step_is_positive_and_bounded_by_hmax() -> None:
    def f(t, y):
        return -y

    y0 = torch.ones(1, 3, dtype=torch.float64)
    h = initial_step(f, 0.0, y0, f(0.0, y0), 1.0, 5, 1e-6, 1e-6, 0.05)
    assert 0 < h <= 0.05
    hb = initial_step(f, 0.0, y0, f(0.0, y0), -1.0, 5, 1e-6, 1e-6, 10.0)
    assert hb < 0
