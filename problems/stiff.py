"""Stiff problems from the Bari IVP test set: Robertson (ROBER) and Van der Pol (VDPOLM, VDPOL).

Published values are from F. Mazzia and C. Magherini, "Test Set for IVP Solvers", release 2.4,
Department of Mathematics, University of Bari (https://archimede.uniba.it/~testset/), computed
there with RADAU in extended precision (uround 1.01e-19, rtol = atol = h0 = 1.1e-18 for VDPOL).
Explicit solvers can only crawl through these problems, so each has a ``max_steps`` budget that
ends such a run quickly with status ``max_steps`` instead of hours of tiny steps.

Van der Pol, two forms of one problem. The original oscillator (test set problem VDPOLM):

    x'' - mu (1 - x^2) x' + x = 0,  x(0) = 2, x'(0) = 0,  t in [0, 2000], mu = 1000,
    state (x, x'):  x' = v,  v' = mu (1 - x^2) v - x.

The Lienard-rescaled form (test set problem VDPOL, Hairer & Wanner, Solving ODEs II, IV.1):

    y1' = y2,  y2' = ((1 - y1^2) y2 - y1) / eps,  y(0) = (2, 0),  s in [0, 2], eps = 1e-6.

Derivation of the map: put s = t / mu, y1(s) = x(mu s) and y2(s) = dy1/ds = mu x'(mu s).
Then dy1/ds = y2 and, using mu x' = y2,

    dy2/ds = mu^2 x''(mu s) = mu^2 (mu (1 - x^2) x' - x) = mu^2 ((1 - y1^2) y2 - y1),

which is ((1 - y1^2) y2 - y1) / eps with eps = 1 / mu^2 = 1e-6. The initial values agree
(y2(0) = mu x'(0) = 0) and s = 2 is t = 2 mu = 2000, so

    x(2000) = y1(2),   x'(2000) = y2(2) / mu.

The test set's two published end values agree under this map to 14 digits (see
``VDPOL_CONSISTENCY`` below); ``tests/test_problem_stiff.py`` checks it again with scipy Radau.

Prothero-Robinson (``prothero-robinson``, and its non-stiff variant ``prothero-robinson-mild``),
the scalar test equation of A. Prothero and A. Robinson (Math. Comp. 28 (1974) 145-162):

    y' = lambda (y - phi(t)) + phi'(t),  y(0) = phi(0),  exact solution y(t) = phi(t),

here with ``phi(t) = sin(t)`` (a common choice; the paper's analysis holds for any smooth phi)
on t in [0, 1]. With ``lambda = -1e6`` a step with ``|lambda h| >> 1`` shows the order
reduction of one-step methods whose stage order is low (the point of the paper); with
``lambda = -1`` it is a mild, non-stiff and non-autonomous problem with a closed form.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from harness.registry import register_problem
from problems import references
from problems.base import Problem, Reference, RefKind, doubling
from problems.references import RefCheck

BARI = "Mazzia & Magherini, Test Set for IVP Solvers, release 2.4, Univ. of Bari"
# Where no explicit solver can reach the end (ROBER to 1e11, VDPOL with stiffness ~1e6 over
# about one period) a smaller budget ends such runs four times sooner with the same verdict.
SHORT_STEP_BUDGET = 2_000

# ---------------------------------------------------------------------------------------------
# robertson (ROBER)

ROBER_K = (0.04, 1.0e4, 3.0e7)
ROBER_Y0 = (1.0, 0.0, 0.0)
ROBER_T = np.array([0.0, 40.0, 1.0e11])
# test set, problem ROBER, reference solution at t = 1e11 (rober.f, subroutine solut)
ROBER_Y_1E11 = (0.2083340149701255e-07, 0.8333360770334713e-13, 0.9999999791665050)


def robertson_rhs(t: float, y: np.ndarray, k: tuple = ROBER_K) -> np.ndarray:
    """numpy form of ROBER, for the scipy reference solve; ``k`` in ``ROBER_K``'s order."""
    k1, k2, k3 = k
    r1, r2, r3 = k1 * y[0], k2 * y[1] * y[2], k3 * y[1] ** 2
    return np.array([-r1 + r2, r1 - r2 - r3, r3])


def robertson_jac(t: float, y: np.ndarray, k: tuple = ROBER_K) -> np.ndarray:
    k1, k2, k3 = k
    return np.array(
        [
            [-k1, k2 * y[2], k2 * y[1]],
            [k1, -k2 * y[2] - 2 * k3 * y[1], -k2 * y[1]],
            [0.0, 2 * k3 * y[1], 0.0],
        ]
    )


class RobertsonField(nn.Module):
    """Robertson's chemical kinetics (1966), as test set problem ROBER:
    ``y1' = -0.04 y1 + 1e4 y2 y3``, ``y2' = 0.04 y1 - 1e4 y2 y3 - 3e7 y2^2``,
    ``y3' = 3e7 y2^2``.
    """

    def __init__(self, k: tuple[float, float, float] = ROBER_K) -> None:
        super().__init__()
        self.k1, self.k2, self.k3 = k

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        r1 = self.k1 * y1
        r2 = self.k2 * y2 * y3
        r3 = self.k3 * y2 * y2
        return torch.stack((-r1 + r2, r1 - r2 - r3, r3), dim=-1)


class RobertsonRatesField(nn.Module):
    """ROBER with learnable rate constants, as logarithms ``log_k = log (k1, k2, k3)`` (start:
    the test set's 0.04, 3e7, 1e4): the classic stiff inverse problem, whose gradient with
    respect to ``log_k`` ``scripts/rober_gradients.py`` computes in every gradient mode."""

    def __init__(self) -> None:
        super().__init__()
        k1, k3, k2 = ROBER_K  # RobertsonField's order: 0.04, 1e4 (y2 y3), 3e7 (y2^2)
        self.log_k = nn.Parameter(torch.log(torch.tensor([k1, k2, k3], dtype=torch.float64)))

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k1, k2, k3 = self.log_k.exp().unbind()
        y1, y2, y3 = y.unbind(-1)
        return torch.stack((-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2 * y2,
                            k2 * y2 * y2), -1)


ROBER_RATES_T = (0.0, 0.1, 1.0, 10.0, 40.0)
"""The output times of the rate-gradient experiment (``scripts/rober_gradients.py``)."""


def robertson_rates_loss(ys: torch.Tensor) -> torch.Tensor:
    """The experiment's loss of a ROBER solution at :data:`ROBER_RATES_T`:
    ``100 sum y1 y3 + 1e4 sum y2`` over the outputs after the start."""
    return (ys[1:, 0] * ys[1:, 2]).sum() * 1e2 + (ys[1:, 1] * 1e4).sum()


def robertson_rates_gradient(times=ROBER_RATES_T, step: float = 1e-5) -> np.ndarray:
    """The reference gradient of :func:`robertson_rates_loss` with respect to
    :class:`RobertsonRatesField`'s ``log_k`` (order k1, k2, k3 = 0.04, 3e7, 1e4): central
    differences (``step`` in log k) of scipy Radau solves at rtol 1e-12, atol 1e-16 with the
    analytic Jacobian."""
    from scipy.integrate import solve_ivp

    log_k = np.log([ROBER_K[0], ROBER_K[2], ROBER_K[1]])

    def loss(lk: np.ndarray) -> float:
        k1, k2, k3 = np.exp(lk)
        k = (k1, k3, k2)  # ROBER_K's order

        s = solve_ivp(robertson_rhs, (times[0], times[-1]), list(ROBER_Y0), method="Radau",
                      jac=robertson_jac, args=(k,), t_eval=times, rtol=1e-12, atol=1e-16)
        return float(robertson_rates_loss(torch.tensor(s.y.T)))

    return np.array([(loss(log_k + step * e) - loss(log_k - step * e)) / (2 * step)
                     for e in np.eye(3)])




@register_problem("robertson")
def build_robertson(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """ROBER on [0, 1e11], output at t = 40 and 1e11.

    The t = 1e11 row is the test set's published value; the t = 40 row (the classic end point
    of Robertson's original study) is a tight scipy Radau solve stored in
    ``problems/data/robertson_t40.json``, cross-checked by BDF; a long Radau solve to 1e11
    reproduces the published row to ~1e-12 relative, which is why the t = 40 row is trusted.
    """
    stored = references.load("robertson_t40")
    references.check_times(stored, ROBER_T[:2])
    ys = np.array([ROBER_Y0, stored.ys[1], ROBER_Y_1E11], dtype=np.float64)
    return Problem(
        name="robertson",
        tags=frozenset({"stiff", "small"}),
        f=RobertsonField(),
        y0=torch.tensor(ROBER_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(ROBER_T, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance=f"published: y(1e11) from {BARI}, problem ROBER; y(40) {stored.provenance}",
        ),
        # Our choice of scales (the test set leaves tolerances to the user): y2 peaks near
        # 3.6e-5 and ends near 8e-14, so atol is small enough to weigh it until late times.
        atol=1e-10,
        rtol=1e-6,
        description="Robertson's autocatalytic reaction; stiffness grows with t to 1e11. "
        "Explicit solvers stop at max_steps.",
        citation="H.H. Robertson, The solution of a set of reaction rate equations, in "
        "Numerical Analysis: an Introduction, Academic Press 1966; " + BARI,
        max_steps=SHORT_STEP_BUDGET,
        extra={
            "reference_rows": {
                "0": "initial value",
                "40": "computed: " + stored.meta["solver"],
                "1e11": "published: " + BARI,
            },
            "reference_cross_check_t40": stored.meta.get("cross_check"),
        },
    )


# ---------------------------------------------------------------------------------------------
# vdpol-mu1000 (test set VDPOLM) and the rescaled form (test set VDPOL)

VDPOL_MU = 1000.0
VDPOL_EPS = 1.0e-6  # = 1 / mu^2
VDPOL_Y0 = (2.0, 0.0)
VDPOL_T = np.array([0.0, 2000.0])
# test set, problem VDPOLM (mu form, t = 2000), vdpolm.f subroutine solut
VDPOLM_Y_2000 = (0.1706167732170469e01, -0.8928097010248125e-03)
# test set, problem VDPOL (eps form, s = 2), vdpol.f subroutine solut
VDPOL_EPS_Y_2 = (0.1706167732170483e01, -0.8928097010247975e00)
# the eps-form values mapped by x = y1, x' = y2 / mu, and their difference from VDPOLM's
VDPOL_CONSISTENCY = {
    "x(2000) from VDPOL": VDPOL_EPS_Y_2[0],
    "x'(2000) from VDPOL": VDPOL_EPS_Y_2[1] / VDPOL_MU,
    "abs diff x": abs(VDPOL_EPS_Y_2[0] - VDPOLM_Y_2000[0]),  # 1.4e-14
    "abs diff x'": abs(VDPOL_EPS_Y_2[1] / VDPOL_MU - VDPOLM_Y_2000[1]),  # 1.5e-17 (1.7e-14 rel)
}


def vdpol_mu_rhs(t: float, y: np.ndarray, mu: float = VDPOL_MU) -> np.ndarray:
    """numpy form of the mu form, for scipy solves."""
    return np.array([y[1], mu * (1.0 - y[0] ** 2) * y[1] - y[0]])


def vdpol_mu_jac(t: float, y: np.ndarray, mu: float = VDPOL_MU) -> np.ndarray:
    return np.array([[0.0, 1.0], [-2.0 * mu * y[0] * y[1] - 1.0, mu * (1.0 - y[0] ** 2)]])


def vdpol_eps_rhs(t: float, y: np.ndarray, eps: float = VDPOL_EPS) -> np.ndarray:
    """numpy form of the eps (Lienard-rescaled) form, for scipy solves."""
    return np.array([y[1], ((1.0 - y[0] ** 2) * y[1] - y[0]) / eps])


def vdpol_eps_jac(t: float, y: np.ndarray, eps: float = VDPOL_EPS) -> np.ndarray:
    return np.array([[0.0, 1.0], [(-2.0 * y[0] * y[1] - 1.0) / eps, (1.0 - y[0] ** 2) / eps]])


def eps_to_mu_form(s: np.ndarray, y: np.ndarray, mu: float = VDPOL_MU) -> tuple:
    """Map the eps form ``(s, y1, y2)`` to the mu form: ``t = mu s``, ``(x, x') = (y1, y2/mu)``."""
    y = np.asarray(y, dtype=np.float64)
    return mu * np.asarray(s), np.stack((y[..., 0], y[..., 1] / mu), axis=-1)


class VanDerPolField(nn.Module):
    """Van der Pol oscillator in the original variables: ``x' = v``,
    ``v' = mu (1 - x^2) v - x`` (test set VDPOLM)."""

    def __init__(self, mu: float = VDPOL_MU) -> None:
        super().__init__()
        self.mu = mu

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, v = y[..., 0], y[..., 1]
        return torch.stack((v, self.mu * (1.0 - x * x) * v - x), dim=-1)


class VanDerPolEpsField(nn.Module):
    """Van der Pol, Lienard-rescaled: ``y1' = y2``, ``y2' = ((1 - y1^2) y2 - y1) / eps``
    (test set VDPOL)."""

    def __init__(self, eps: float = VDPOL_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[..., 0], y[..., 1]
        return torch.stack((y2, ((1.0 - y1 * y1) * y2 - y1) / self.eps), dim=-1)


@register_problem("vdpol-mu1000")
def build_vdpol_mu1000(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """Van der Pol, mu = 1000, t in [0, 2000]: the test set's VDPOLM, with its published
    end value. (The eps form is ``vdpol``, :func:`build_vdpol_eps`: the same problem in
    other variables.)"""
    ys = np.array([VDPOL_Y0, VDPOLM_Y_2000], dtype=np.float64)
    return Problem(
        name="vdpol-mu1000",
        tags=frozenset({"stiff", "small"}),
        f=VanDerPolField(),
        y0=torch.tensor(VDPOL_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(VDPOL_T, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance=f"published: y(2000) from {BARI}, problem VDPOLM (RADAU, rtol=atol=1.1e-18,"
            " uround 1e-19); agrees with VDPOL's y(2) mapped x=y1, x'=y2/mu to 1.7e-14 rel",
        ),
        # Our choice of scales: x is O(1); x' is O(1) on the slow branches and O(mu) in the jumps.
        atol=1e-6,
        rtol=1e-6,
        description="Van der Pol relaxation oscillator x'' - mu(1-x^2)x' + x = 0, mu = 1000, "
        "about one period; very stiff on the slow branches. Explicit solvers stop at max_steps.",
        citation="B. van der Pol, Phil. Mag. 2 (1926); Hairer & Wanner, Solving ODEs II, "
        "Sect. IV.1; " + BARI + ", problems VDPOLM and VDPOL",
        max_steps=SHORT_STEP_BUDGET,
        extra={"mu": VDPOL_MU, "eps_form_published_y2": VDPOL_EPS_Y_2, **VDPOL_CONSISTENCY},
    )


VDPOL_EPS_T = np.array([0.0, 0.5, 1.0, 1.5, 2.0])


@register_problem("vdpol")
def build_vdpol_eps(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """The test set's VDPOL (eps = 1e-6, s in [0, 2]), registered as ``vdpol``: the same
    oscillator as ``vdpol-mu1000`` in Lienard-rescaled variables, with the published end value
    (vdpol.f, solut) and stored Radau rows at s = 0.5, 1, 1.5."""
    stored = references.load("vdpol")
    references.check_times(stored, VDPOL_EPS_T)
    ys = stored.ys.copy()
    ys[-1] = VDPOL_EPS_Y_2
    return Problem(
        name="vdpol",
        tags=frozenset({"stiff", "small"}),
        f=VanDerPolEpsField(),
        y0=torch.tensor(VDPOL_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(VDPOL_EPS_T, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance=f"published: y(2) from {BARI}, problem VDPOL (vdpol.f, solut; RADAU, "
            f"rtol=atol=1.1e-18); rows s = 0.5, 1, 1.5 {stored.provenance}",
        ),
        # Our choice of scales: y1 is O(1); y2 is O(1) on the slow branches, 1/sqrt(eps) in jumps.
        atol=1e-6,
        rtol=1e-6,
        description="Van der Pol in Lienard-rescaled variables, eps = 1e-6 (= 1/mu^2, mu = 1000), "
        "s in [0, 2]: about one period; explicit solvers stop at max_steps.",
        citation="Hairer & Wanner, Solving ODEs II, Sect. IV.1; " + BARI + ", problem VDPOL",
        max_steps=SHORT_STEP_BUDGET,
        extra={
            "eps": VDPOL_EPS,
            "reference_rows": {"0": "initial value", "0.5, 1, 1.5": "computed: "
                               + stored.meta["solver"], "2": "published: " + BARI},
            "reference_cross_check": stored.meta.get("cross_check"),
        },
    )


# ---------------------------------------------------------------------------------------------
# prothero-robinson (and prothero-robinson-mild): y' = lambda (y - phi(t)) + phi'(t), phi = sin

PROTHERO = (
    "A. Prothero, A. Robinson, On the stability and accuracy of one-step methods for solving "
    "stiff systems of ordinary differential equations, Math. Comp. 28 (1974) 145-162"
)
PR_LAMBDA = -1.0e6  # stiff: |lambda h| >> 1 for any step a solver of phi would take
PR_LAMBDA_MILD = -1.0  # non-stiff: |lambda h| small
PR_T = np.linspace(0.0, 1.0, 5)


def prothero_robinson_exact(t: np.ndarray) -> np.ndarray:
    """The exact solution ``y(t) = phi(t) = sin(t)``, ``[len(t), 1]`` (for any lambda)."""
    return np.sin(np.asarray(t, dtype=np.float64)).reshape(-1, 1)


def prothero_robinson_rhs(t: float, y: np.ndarray, lam: float = PR_LAMBDA) -> np.ndarray:
    """numpy form, for scipy solves: ``lam (y - sin t) + cos t``."""
    return lam * (np.asarray(y) - math.sin(t)) + math.cos(t)


def prothero_robinson_jac(t: float, y: np.ndarray, lam: float = PR_LAMBDA) -> np.ndarray:
    return np.array([[lam]])


def _pr_mild_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return prothero_robinson_rhs(t, y, PR_LAMBDA_MILD)


def _pr_mild_jac(t: float, y: np.ndarray) -> np.ndarray:
    return prothero_robinson_jac(t, y, PR_LAMBDA_MILD)


class ProtheroRobinsonField(nn.Module):
    """Prothero-Robinson with ``phi = sin``: ``y' = lam (y - sin t) + cos t`` (non-autonomous;
    ``t`` a Python float or a 0-d tensor), batched over the leading dims of ``y``."""

    def __init__(self, lam: float = PR_LAMBDA) -> None:
        super().__init__()
        self.lam = float(lam)

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tt = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        return self.lam * (y - torch.sin(tt)) + torch.cos(tt)


def build_prothero_robinson_lam(
    lam: float = PR_LAMBDA,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    name: str | None = None,
) -> Problem:
    """Prothero-Robinson with ``phi(t) = sin(t)`` and a given ``lam`` on t in [0, 1] (output at
    0, 0.25, ..., 1), exact reference ``y = sin(t)``. ``lam < 0`` large in magnitude is stiff
    (tagged ``stiff``, with an explicit-solver budget), ``|lam|`` of order 1 is not (tagged
    ``nonstiff``, with a fixed-step ladder). The registered forms are ``prothero-robinson``
    (``lam = -1e6``) and ``prothero-robinson-mild`` (``lam = -1``)."""
    lam = float(lam)
    stiff = abs(lam) * float(PR_T[-1]) > 1.0e3
    name = name or f"prothero-robinson(lam={lam:g})"
    # Explicit Euler is stable for h < 2/|lam|, rk4 for h < 2.8/|lam|: at lam = -1 every rung.
    # lam = -1 (measured, max error over the outputs): Euler errs 5.2e-3 at 32 steps, 3.3e-4 at
    # 512, halving each rung; rk4 errs 1.1e-6 at 8 steps, 1.7e-11 at 128, 6.4e-14 at 512 (the
    # floor is near 1e-15): from 8 its five rungs stay well above it.
    steps = None if stiff else {1: doubling(32), 4: doubling(8)}
    return Problem(
        name=name,
        tags=frozenset({"stiff" if stiff else "nonstiff", "exact", "small"}),
        f=ProtheroRobinsonField(lam),
        y0=torch.zeros(1, dtype=dtype, device=device),  # phi(0) = sin(0) = 0
        t=torch.as_tensor(PR_T, dtype=dtype, device=device),
        reference=Reference(
            ys=prothero_robinson_exact(PR_T),
            kind=RefKind.EXACT,
            provenance=f"exact: y(t) = phi(t) = sin(t) solves y' = lam (y - phi) + phi' with "
            f"y(0) = phi(0), lam = {lam:g} (problems.stiff.prothero_robinson_exact)",
        ),
        # Our choice of scales: y = sin t is O(1) on [0, 1] and 0 at the start
        atol=1e-6,
        rtol=1e-6,
        description=f"Prothero-Robinson y' = lam (y - sin t) + cos t, lam = {lam:g}, t in "
        "[0, 1]; exact solution sin t. "
        + ("Stiff: shows order reduction; explicit solvers stop at max_steps." if stiff else
           "Non-stiff and non-autonomous: a closed form to measure orders on."),
        citation=PROTHERO + "; phi(t) = sin(t) is our (common) choice",
        max_steps=SHORT_STEP_BUDGET if stiff else None,
        steps=steps,
        extra={"lambda": lam, "phi": "sin(t)"},
    )


@register_problem("prothero-robinson")
def build_prothero_robinson(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """Prothero-Robinson, ``lam = -1e6`` (stiff), ``phi = sin``, t in [0, 1]."""
    return build_prothero_robinson_lam(PR_LAMBDA, dtype, device, name="prothero-robinson")


@register_problem("prothero-robinson-mild")
def build_prothero_robinson_mild(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """Prothero-Robinson, ``lam = -1`` (non-stiff), ``phi = sin``, t in [0, 1]."""
    return build_prothero_robinson_lam(PR_LAMBDA_MILD, dtype, device,
                                       name="prothero-robinson-mild")


# ---------------------------------------------------------------------------------------------
# stored computed references (python -m problems.make_references)

COMPUTED = [
    references.ComputedSpec(
        name="robertson_t40",
        rhs=robertson_rhs,
        jac=robertson_jac,
        y0=ROBER_Y0,
        t=[0.0, 40.0],
        method="Radau",
        rtol=1e-12,
        atol=1e-20,
        check_method="BDF",
        note="ROBER at t = 40 (the test set publishes only t = 1e11); a stiff solve, so Radau",
    ),
    references.ComputedSpec(
        name="vdpol",
        rhs=vdpol_eps_rhs,
        jac=vdpol_eps_jac,
        y0=(2.0, 0.0),
        t=[0.0, 0.5, 1.0, 1.5, 2.0],
        method="Radau",
        rtol=1e-12,
        atol=1e-12,
        check_method="LSODA",
        note="VDPOL (eps = 1e-6) at s = 0, 0.5, ..., 2; the s = 2 row is replaced by the published "
        "value when the problem is built",
    ),
]


# ---------------------------------------------------------------------------------------------
# refs --check: how each reference here is verified (see harness.refs and docs/references.md)

CHECKS = [
    RefCheck(problem="robertson", rhs=robertson_rhs, jac=robertson_jac, method="Radau",
             rtol=1e-10, atol=1e-22, digits=8.0, floor=1e-20, computed=("robertson_t40",),
             note="published y(1e11) and stored y(40) vs Radau rtol 1e-10"),
    RefCheck(problem="vdpol-mu1000", rhs=vdpol_mu_rhs, jac=vdpol_mu_jac, method="Radau",
             rtol=1e-11, atol=1e-11, digits=7.0, floor=1e-6,
             note="published y(2000) vs Radau rtol 1e-11; the end lies near a fast jump"),
    RefCheck(problem="vdpol", rhs=vdpol_eps_rhs, jac=vdpol_eps_jac, method="Radau",
             rtol=1e-11, atol=1e-11, digits=7.0, floor=1e-6, computed=("vdpol",),
             note="published y(2) and stored rows vs Radau rtol 1e-11"),
    RefCheck(problem="prothero-robinson", rhs=prothero_robinson_rhs, jac=prothero_robinson_jac,
             method="Radau", rtol=1e-13, atol=1e-15, digits=10.0, floor=1e-6,
             note="closed form sin(t) vs Radau rtol 1e-13 (10.5 digits: Radau's own order "
             "reduction here; 9.5 at rtol 1e-12)"),
    RefCheck(problem="prothero-robinson-mild", rhs=_pr_mild_rhs, jac=_pr_mild_jac,
             method="DOP853", rtol=1e-13, atol=1e-15, digits=11.0, floor=1e-12,
             note="closed form sin(t) vs DOP853 rtol 1e-13"),
]
