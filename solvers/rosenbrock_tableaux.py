"""Rosenbrock methods as data: the coefficients of a linearly implicit method in the form its
codes run (Hairer & Wanner, *Solving ODEs II*, 2nd ed., Sec. IV.7, eq. 7.4'), one step of size
``h`` from ``(t, y)`` with ``J = df/dy(t, y)`` and ``f_t = df/dt(t, y)``::

    (I / (h gamma) - J) u_i = f(t + c_i h, y + sum_{j<i} a_ij u_j) + sum_{j<i} (C_ij / h) u_j
                              + h d_i f_t
    y1 = y + sum_i m_i u_i,          error estimate  sum_i e_i u_i

Every stage solves with the same matrix, so a step costs one LU and ``s`` solves. The form
comes from the textbook one (``alpha``, ``Gamma``, ``b``: ``k_i`` with ``(I - h gamma_ii J)``)
by ``u = h Gamma k``: ``A = alpha Gamma^-1``, ``C = diag(1/gamma) - Gamma^-1``,
``m = b Gamma^-1``, ``d_i = sum_j Gamma_ij``. :meth:`RosenbrockTableau.classic` inverts this,
and ``tests/test_solver_rosenbrock.py`` checks the order conditions (HW II, Table IV.7.1) on
the result, numerically from the coefficients below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method in the implementation form above.

    ``A`` and ``C``: the strictly lower rows (row ``i`` has ``i`` entries, row 0 none);
    ``c``: the stage times; ``d``: the ``f_t`` weights; ``m``: the solution weights; ``e``: the
    error estimate's weights (``m`` minus the embedded solution's); ``dense``: the rows of a
    continuous extension ``y(t + theta h) = y + theta (y1 - y + (1 - theta) (D0 u + theta D1 u))``
    (RODAS's form), or None (cubic Hermite from ``f`` at both ends).
    """

    name: str
    order: int
    error_order: int
    gamma: float
    A: tuple[tuple[float, ...], ...]
    C: tuple[tuple[float, ...], ...]
    c: tuple[float, ...]
    d: tuple[float, ...]
    m: tuple[float, ...]
    e: tuple[float, ...]
    dense: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    dense_order: int = 0
    citation: str = ""
    rtol_min: float = 0.0  # the tightest tolerance the method is made for (0: no limit)

    @property
    def stages(self) -> int:
        return len(self.m)

    def validate(self) -> None:
        s = self.stages
        rows = [len(r) for r in self.A], [len(r) for r in self.C]
        for what, lens in zip(("A", "C"), rows, strict=True):
            if lens != list(range(s)):
                raise ValueError(f"{self.name}: {what} must have rows of 0..{s - 1} entries; "
                                 f"got {lens}")
        for what, v in (("c", self.c), ("d", self.d), ("e", self.e)):
            if len(v) != s:
                raise ValueError(f"{self.name}: `{what}` needs {s} entries; got {len(v)}")
        if self.dense is not None and any(len(r) != s for r in self.dense):
            raise ValueError(f"{self.name}: each dense row needs {s} entries")
        if not self.gamma > 0.0:
            raise ValueError(f"{self.name}: gamma must be > 0; got {self.gamma}")

    def lower(self, rows) -> np.ndarray:
        s = self.stages
        M = np.zeros((s, s))
        for i, r in enumerate(rows):
            M[i, : len(r)] = r
        return M

    def classic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(alpha, Gamma, b, b_hat)`` of the textbook form (HW II, eq. 7.4), from this one."""
        s = self.stages
        Gamma = np.linalg.inv(np.eye(s) / self.gamma - self.lower(self.C))
        alpha = self.lower(self.A) @ Gamma
        m = np.asarray(self.m)
        return alpha, Gamma, m @ Gamma, (m - np.asarray(self.e)) @ Gamma


# E. Hairer, G. Wanner, Solving ODEs II (2nd ed., 1996), Sec. VI.4: RODAS, order 4(3), 6 stages,
# L-stable and stiffly accurate, gamma = 1/4; the coefficients of the authors' code rodas.f
# (subroutine ROCOE, METH = 1, "method with gamma = 1/4", version of 1996), 16 digits. The 5th
# and 6th stages are at t + h, their inputs the embedded and the final solution (a6j = a5j,
# a65 = 1), so m = (a51, a52, a53, a54, 1, 1) and the error estimate is u_6.
_R = dict(
    a21=0.1544000000000000e01, a31=0.9466785280815826e00, a32=0.2557011698983284e00,
    a41=0.3314825187068521e01, a42=0.2896124015972201e01, a43=0.9986419139977817e00,
    a51=0.1221224509226641e01, a52=0.6019134481288629e01, a53=0.1253708332932087e02,
    a54=-0.6878860361058950e00,
    c21=-0.5668800000000000e01, c31=-0.2430093356833875e01, c32=-0.2063599157091915e00,
    c41=-0.1073529058151375e00, c42=-0.9594562251023355e01, c43=-0.2047028614809616e02,
    c51=0.7496443313967647e01, c52=-0.1024680431464352e02, c53=-0.3399990352819905e02,
    c54=0.1170890893206160e02, c61=0.8083246795921522e01, c62=-0.7981132988064893e01,
    c63=-0.3152159432874371e02, c64=0.1631930543123136e02, c65=-0.6058818238834054e01,
    d21=0.1012623508344586e02, d22=-0.7487995877610167e01, d23=-0.3480091861555747e02,
    d24=-0.7992771707568823e01, d25=0.1025137723295662e01, d31=-0.6762803392801253e00,
    d32=0.6087714651680015e01, d33=0.1643084320892478e02, d34=0.2476722511418386e02,
    d35=-0.6594389125716872e01,
)

RODAS4 = RosenbrockTableau(
    name="rodas4",
    order=4,
    error_order=3,
    gamma=0.25,
    A=(
        (),
        (_R["a21"],),
        (_R["a31"], _R["a32"]),
        (_R["a41"], _R["a42"], _R["a43"]),
        (_R["a51"], _R["a52"], _R["a53"], _R["a54"]),
        (_R["a51"], _R["a52"], _R["a53"], _R["a54"], 1.0),
    ),
    C=(
        (),
        (_R["c21"],),
        (_R["c31"], _R["c32"]),
        (_R["c41"], _R["c42"], _R["c43"]),
        (_R["c51"], _R["c52"], _R["c53"], _R["c54"]),
        (_R["c61"], _R["c62"], _R["c63"], _R["c64"], _R["c65"]),
    ),
    c=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    d=(0.25, -0.1043, 0.1035, -0.3620000000000023e-01, 0.0, 0.0),
    m=(_R["a51"], _R["a52"], _R["a53"], _R["a54"], 1.0, 1.0),
    e=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    dense=(
        (_R["d21"], _R["d22"], _R["d23"], _R["d24"], _R["d25"], 0.0),
        (_R["d31"], _R["d32"], _R["d33"], _R["d34"], _R["d35"], 0.0),
    ),
    dense_order=3,
    citation="E. Hairer, G. Wanner, Solving Ordinary Differential Equations II, 2nd ed., "
    "Springer 1996, Sec. VI.4 (RODAS); coefficients of rodas.f, ROCOE with METH = 1",
)

# J. Lang, J. Verwer, "ROS3P -- an accurate third-order Rosenbrock solver designed for parabolic
# problems", BIT 41 (2001) 731-738: order 3(2), 3 stages, A-stable, gamma = 1/2 + sqrt(3)/6, in
# the implementation form (gamma_inv = 1/gamma): a21 = a31 = 1/gamma, a32 = 0, c = (0, 1, 1),
# C21 = -1/gamma^2, C31 = -(1/gamma) (1 - tau), C32 = tau with tau = -(1/gamma)(2 - 1/(2 gamma)),
# m = ((1/gamma)(1 + sigma), sigma, 1/(3 gamma)) with sigma = (1/gamma)(2/3 - 1/(6 gamma)).
_G = 0.5 + math.sqrt(3.0) / 6.0
_GI = 1.0 / _G
_TAU = -_GI * (2.0 - 0.5 * _GI)
_SIG = _GI * (2.0 / 3.0 - _GI / 6.0)

ROS3P = RosenbrockTableau(
    name="ros3p",
    order=3,
    error_order=2,
    gamma=_G,
    A=((), (_GI,), (_GI, 0.0)),
    C=((), (-_GI * _GI,), (-_GI * (1.0 - _TAU), _TAU)),
    c=(0.0, 1.0, 1.0),
    d=(0.0, 0.0, 0.0),  # derived below: Gamma's row sums
    m=(_GI * (1.0 + _SIG), _SIG, _GI / 3.0),
    e=(0.0, 0.0, 0.0),  # derived below: m minus the embedded solution's weights
    # order 3 "for moderate accuracy" (Lang & Verwer): at rtol 1e-9 the default suite's
    # problems take it 9,000 to over 100,000 steps, rodas4 at most 17,000
    rtol_min=1e-7,
    citation="J. Lang, J. Verwer, ROS3P -- an accurate third-order Rosenbrock solver designed "
    "for parabolic problems, BIT Numer. Math. 41 (2001) 731-738",
)


def _with_derived(tab: RosenbrockTableau, b_hat: tuple[float, ...]) -> RosenbrockTableau:
    """``d`` as ``Gamma``'s row sums and ``e`` from the embedded method's classic weights
    ``b_hat`` (``m_hat = b_hat Gamma^-1``), both computed from the other coefficients."""
    s = tab.stages
    Gamma = np.linalg.inv(np.eye(s) / tab.gamma - tab.lower(tab.C))
    m_hat = np.asarray(b_hat) @ np.linalg.inv(Gamma)
    return RosenbrockTableau(
        **{**tab.__dict__, "d": tuple(float(x) for x in Gamma.sum(1)),
           "e": tuple(float(x) for x in np.asarray(tab.m) - m_hat)}
    )


# ROS3P's embedded 2nd-order solution: the classic weights b_hat = (1/3, 1/3, 1/3) (the weights
# m_hat = (2.1132..., 1, 0.4226...) in the implementation form, as KPP-style codes list them);
# the order conditions of both solutions are tested
ROS3P = _with_derived(ROS3P, (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0))

ROSENBROCK_TABLEAUX = {t.name: t for t in (RODAS4, ROS3P)}
