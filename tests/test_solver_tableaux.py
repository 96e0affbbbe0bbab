"""Tableau identities and the validator that checks them."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction as F

import pytest

from solvers.tableaux import ALL_TABLEAUX, DOPRI5, RK4, ButcherTableau


@pytest.mark.parametrize("tab", ALL_TABLEAUX, ids=lambda t: t.name)
def test_every_builtin_tableau_satisfies_row_sum_and_weight_identities(tab: ButcherTableau) -> None:
    tab.validate()
    for i in range(tab.stages):
        assert sum(F(x) for x in tab.a[i][:i]) == F(tab.c[i])
    assert sum(F(x) for x in tab.b) == 1


def _order_conditions(tab: ButcherTableau, b) -> dict[str, F]:
    c = [F(x) for x in tab.c]
    s = tab.stages
    a = [[F(tab.a[i][j]) if j < i else F(0) for j in range(s)] for i in range(s)]
    b = [F(x) for x in b]
    ac = [sum(a[i][j] * c[j] for j in range(s)) for i in range(s)]
    return {
        "b.1 = 1": sum(b) - 1,
        "b.c = 1/2": sum(bi * ci for bi, ci in zip(b, c, strict=True)) - F(1, 2),
        "b.c^2 = 1/3": sum(bi * ci**2 for bi, ci in zip(b, c, strict=True)) - F(1, 3),
        "b.Ac = 1/6": sum(bi * x for bi, x in zip(b, ac, strict=True)) - F(1, 6),
        "b.c^3 = 1/4": sum(bi * ci**3 for bi, ci in zip(b, c, strict=True)) - F(1, 4),
    }


@pytest.mark.parametrize("tab", [RK4, DOPRI5], ids=lambda t: t.name)
def test_order_conditions_up_to_order_four_hold_exactly(tab: ButcherTableau) -> None:
    assert all(v == 0 for v in _order_conditions(tab, tab.b).values())


def test_dopri5_embedded_solution_is_order_four_and_b_err_sums_to_zero() -> None:
    b_hat = [F(b) - F(e) for b, e in zip(DOPRI5.b, DOPRI5.b_err, strict=True)]
    assert all(v == 0 for v in _order_conditions(DOPRI5, b_hat).values())
    assert sum(F(e) for e in DOPRI5.b_err) == 0


def test_dopri5_dense_weights_are_b_at_theta_one_and_zero_at_theta_zero() -> None:
    assert DOPRI5.dense_weights(1.0) == pytest.approx([float(x) for x in DOPRI5.b], abs=1e-15)
    assert DOPRI5.dense_weights(0.0) == [0.0] * DOPRI5.stages


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"c": (0, F(1, 3), F(1, 2), 1)}, "does not sum to c"),
        ({"b": (F(1, 6), F(1, 3), F(1, 3), F(1, 5))}, "b does not sum to 1"),
        ({"a": ((1,), (F(1, 2),), (0, F(1, 2)), (0, 0, 1))}, "row 0"),
    ],
)
def test_validate_names_the_broken_identity(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(RK4, **change).validate()
