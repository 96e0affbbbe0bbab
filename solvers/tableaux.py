"""Butcher tableaux: an explicit Runge–Kutta method as data.

A method is ``(c, A, b)`` (Butcher 1964; Hairer, Nørsett & Wanner, *Solving Ordinary
Differential Equations I*, 2nd ed., Springer 1993 — "HNW I" below — section II.1). An embedded
pair adds error weights ``b_err = b - b_hat``; a continuous extension adds dense-output
weights ``b_i(theta)``, polynomials in ``theta`` (HNW I, II.6). The engine in
:mod:`solvers.rk` runs any tableau; a new method is a tableau plus one registration.

Coefficients are stored exactly, as :class:`fractions.Fraction`, and turned into floats
(or tensors) where used, so :meth:`ButcherTableau.validate` checks the identities exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as F

Coef = F | int | float


def _as_frac(x: Coef) -> F:
    return x if isinstance(x, F) else F(x)


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method.

    - ``c``: nodes, length ``s``;
    - ``a``: rows of the strictly lower triangular matrix; row ``i`` may hold only its ``i``
      entries below the diagonal (ragged) or all ``s`` entries (zeros on and above it);
    - ``b``: weights of the propagated solution (order ``order``);
    - ``b_err``: ``b - b_hat`` for an embedded pair, so ``h * sum(b_err_i k_i)`` estimates the
      local error of the lower-order solution (order ``error_order``);
    - ``fsal``: the last stage is evaluated at ``(t + h, y_new)`` ("first same as last"), so it is
      the next step's first stage;
    - ``dense``: ``dense[i][j]`` is the coefficient of ``theta**(j+1)`` in ``b_i(theta)``, with
      ``y(t + theta*h) ~= y + h * sum_i b_i(theta) k_i`` (HNW I, II.6, eq. 6.7);
      ``dense_order`` is the order of that interpolant.
    """

    name: str
    c: tuple[Coef, ...]
    a: tuple[tuple[Coef, ...], ...]
    b: tuple[Coef, ...]
    order: int
    b_err: tuple[Coef, ...] | None = None
    error_order: int | None = None
    fsal: bool = False
    dense: tuple[tuple[Coef, ...], ...] | None = None
    dense_order: int | None = None

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive_capable(self) -> bool:
        """True when the tableau has an embedded error estimate."""
        return self.b_err is not None

    def a_rows(self) -> list[list[float]]:
        """Row ``i`` of ``A`` as floats, cut to its ``i`` entries below the diagonal."""
        return [[float(x) for x in self.a[i][:i]] for i in range(self.stages)]

    def dense_weights(self, theta: float) -> list[float]:
        """``b_i(theta)`` for each stage (requires ``dense``)."""
        if self.dense is None:
            raise ValueError(f"tableau {self.name!r} has no dense-output coefficients")
        out = []
        for row in self.dense:
            acc, p = 0.0, theta
            for coef in row:
                acc += float(coef) * p
                p *= theta
            out.append(acc)
        return out

    def validate(self) -> None:
        """Check the identities every consistent explicit tableau satisfies, exactly.

        ``sum_j a_ij = c_i`` (the row-sum condition, HNW I eq. 1.9), ``sum b_i = 1``,
        ``A`` strictly lower triangular, ``sum b_err_i = 0`` for an embedded pair, an FSAL
        last row equal to ``b`` with ``c_s = 1``, and dense weights equal to ``b`` at
        ``theta = 1`` and summing to ``theta``. Raises ``ValueError`` naming the broken one.
        """
        s = self.stages
        if len(self.a) != s or len(self.b) != s:
            raise ValueError(f"{self.name}: c, a, b must all have {s} stages")
        for i, row in enumerate(self.a):
            if len(row) not in (i, s):
                raise ValueError(f"{self.name}: a row {i} must have {i} or {s} entries")
            if any(_as_frac(x) != 0 for x in row[i:]):
                raise ValueError(f"{self.name}: a is not strictly lower triangular (row {i})")
            if sum(_as_frac(x) for x in row[:i]) != _as_frac(self.c[i]):
                raise ValueError(f"{self.name}: row {i} of a does not sum to c[{i}]")
        if sum(_as_frac(x) for x in self.b) != 1:
            raise ValueError(f"{self.name}: b does not sum to 1")
        if self.b_err is not None:
            if len(self.b_err) != s:
                raise ValueError(f"{self.name}: b_err must have {s} entries")
            if sum(_as_frac(x) for x in self.b_err) != 0:
                raise ValueError(f"{self.name}: b_err does not sum to 0")
        if self.fsal:
            last = [_as_frac(x) for x in self.a[-1][: s - 1]]
            if last != [_as_frac(x) for x in self.b[: s - 1]] or _as_frac(self.b[-1]) != 0:
                raise ValueError(f"{self.name}: FSAL needs the last row of a equal to b")
            if _as_frac(self.c[-1]) != 1:
                raise ValueError(f"{self.name}: FSAL needs c[-1] == 1")
        if self.dense is not None:
            if len(self.dense) != s:
                raise ValueError(f"{self.name}: dense must have {s} rows")
            at_one = [sum(_as_frac(x) for x in row) for row in self.dense]
            if at_one != [_as_frac(x) for x in self.b]:
                raise ValueError(f"{self.name}: dense weights at theta=1 differ from b")
            deg = max(len(r) for r in self.dense)
            for j in range(deg):
                total = sum(_as_frac(r[j]) if j < len(r) else F(0) for r in self.dense)
                if total != (1 if j == 0 else 0):
                    raise ValueError(f"{self.name}: dense weights do not sum to theta")


EULER = ButcherTableau(name="euler", c=(0,), a=((),), b=(1,), order=1)
"""Explicit Euler (HNW I, I.7)."""

HEUN = ButcherTableau(
    name="heun",
    c=(0, 1),
    a=((), (1,)),
    b=(F(1, 2), F(1, 2)),
    order=2,
    b_err=(F(-1, 2), F(1, 2)),  # Heun minus Euler: an embedded 2(1) pair
    error_order=1,
)
"""Heun's method, the explicit trapezoidal rule (HNW I, II.1, Table 1.1), with Euler embedded."""

RK4 = ButcherTableau(
    name="rk4",
    c=(0, F(1, 2), F(1, 2), 1),
    a=((), (F(1, 2),), (0, F(1, 2)), (0, 0, 1)),
    b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
    order=4,
)
"""The classical Runge–Kutta method (Kutta 1901; HNW I, II.1, Table 1.2, left)."""


# Dormand & Prince, "A family of embedded Runge-Kutta formulae", J. Comp. Appl. Math. 6 (1980)
# 19-26; as printed in HNW I, II.5, Table 5.2, and as used in Hairer's code DOPRI5.
_DP_C = (0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1)
_DP_A = (
    (),
    (F(1, 5),),
    (F(3, 40), F(9, 40)),
    (F(44, 45), F(-56, 15), F(32, 9)),
    (F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
    (F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
    (F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84)),
)
_DP_B = (F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0)
# b - b_hat: the error weights E1..E7 of DOPRI5.
_DP_E = (F(71, 57600), 0, F(-71, 16695), F(71, 1920), F(-17253, 339200), F(22, 525), F(-1, 40))
# The coefficients D1..D7 of the 4th-order continuous extension in Hairer's DOPRI5 (the
# "dense output of Shampine (1986)" block feeding CONTD5); HNW I, II.6, pp. 191-192.
_DP_D = (
    F(-12715105075, 11282082432),
    0,
    F(87487479700, 32700410799),
    F(-10690763975, 1880347072),
    F(701980252875, 199316789632),
    F(-1453857185, 822651844),
    F(69997945, 29380423),
)


def _hairer_dense(b: tuple[Coef, ...], d: tuple[Coef, ...]) -> tuple[tuple[F, ...], ...]:
    """Expand DOPRI5's CONTD5 form into per-stage polynomials ``b_i(theta)``.

    DOPRI5 stores ``r1 = y``, ``r2 = y1 - y``, ``r3 = h k1 - r2``, ``r4 = r2 - h k7 - r3``,
    ``r5 = h sum d_i k_i`` and evaluates
    ``y(theta) = r1 + theta (r2 + (1-theta)(r3 + theta (r4 + (1-theta) r5)))``.
    With ``r2 = h sum b_i k_i`` every term is linear in the stages; collecting the powers of
    ``theta`` gives coefficients of ``theta, theta^2, theta^3, theta^4`` per stage.
    """
    s = len(b)
    rows = []
    for i in range(s):
        bi, di = _as_frac(b[i]), _as_frac(d[i])
        one = F(1 if i == 0 else 0)  # the stage k1 in r3 and r4
        last = F(1 if i == s - 1 else 0)  # the stage k7 = f(t + h, y1) in r4
        r2, r3 = bi, one - bi
        r4 = r2 - last - r3
        # theta*r2 + theta(1-theta) r3 + theta^2(1-theta) r4 + theta^2(1-theta)^2 r5
        c1 = r2 + r3
        c2 = -r3 + r4 + di
        c3 = -r4 - 2 * di
        c4 = di
        rows.append((c1, c2, c3, c4))
    return tuple(rows)


DOPRI5 = ButcherTableau(
    name="dopri5",
    c=_DP_C,
    a=_DP_A,
    b=_DP_B,
    order=5,
    b_err=_DP_E,
    error_order=4,
    fsal=True,
    dense=_hairer_dense(_DP_B, _DP_D),
    dense_order=4,
)
"""Dormand–Prince 5(4), FSAL, with Hairer's 4th-order continuous extension (HNW I, II.5-6)."""

ALL_TABLEAUX: tuple[ButcherTableau, ...] = (EULER, HEUN, RK4, DOPRI5)
