"""The initial step and the failure checks of the adaptive loop.

Both follow Hairer's DOPRI5 (E. Hairer, G. Wanner, dopri5.f, the code of HNW I, 2nd ed.):

- :func:`initial_step` is DOPRI5's ``HINIT`` (HNW I, II.4, "Starting step size", p. 169) for
  shared steps, :func:`initial_steps` the same for every trajectory of a batch on its own;
- :func:`clip_to_end` is the last-step rule, :func:`step_failure` and
  :func:`nonfinite_failure` the checks that stop a solve with a status.

The step-size rules themselves are :mod:`solvers.controllers`, the norms :mod:`solvers.norms`.
"""

from __future__ import annotations

import math

import torch

from solvers.base import RHS, Status
from solvers.norms import Norm, RMSNorm

HOST_ROWS_MAX = 64
""":func:`initial_step` takes its first guess in Python floats for float64 CPU states of at most
this many rows (trajectories, or channel rows): fewer tensor ops and syncs on small rows, the
same numbers (torch's own square roots; its CPU product with a scalar is IEEE's, as Python's)."""


def _first_guess(
    dnf: list[float], dny: list[float], root_q: list[float], skip_zero_rows: bool
) -> float:
    """The smallest row's ``0.01 * sqrt(dny / dnf)`` (``root_q``; ``1e-6`` for a row with either
    at most ``1e-10``), NaN when a row is NaN: :func:`initial_step`'s ``torch.where``/``min`` on
    floats. ``skip_zero_rows``: rows with ``dny <= 1e-10`` are left out if any row is not."""
    rows = [1.0e-6 if (a <= 1e-10 or b <= 1e-10) else q * 0.01
            for a, b, q in zip(dnf, dny, root_q, strict=True)]
    if skip_zero_rows:
        kept = [r for r, b in zip(rows, dny, strict=True) if b > 1e-10]
        rows = kept or rows
    total = sum(rows)  # the rows are >= 0, +inf or NaN: NaN exactly when a row is
    return math.nan if total != total else min(rows)


def initial_step(
    f: RHS,
    t0: float,
    y0: torch.Tensor,
    f0: torch.Tensor,
    direction: float,
    order: int,
    rtol: float,
    atol: float,
    hmax: float,
    norm: Norm | None = None,
) -> float:
    """DOPRI5's ``HINIT``: a first step from one explicit Euler probe (costs one ``f`` call).

    ``h = 0.01 * ||y0|| / ||f0||`` (or ``1e-6`` when either is tiny), an Euler step to estimate
    the second derivative, then ``h1 = (0.01 / max(||f0||, ||y''||))**(1/order)`` and
    ``h = min(100 h, h1, hmax)``. The norms are weighted root-sums-of-squares with
    ``sk = atol + rtol*|y0|``, *not* divided by the dimension, exactly as in DOPRI5
    (so the result matches Hairer's code). For a batch, each trajectory's norms are taken
    separately: the probe uses the smallest trajectory's first guess and the result is the
    smallest trajectory's step, so identical trajectories start exactly as one does.
    The rows are the ``norm``'s (:mod:`solvers.norms`; None: the whole state is one row); a
    seminorm's rows whose state is zero do not force the ``1e-6`` first guess while others have
    a scale (the adjoint's parameter-gradient channels start at zero).
    Returns the signed step.
    """
    norm = norm or RMSNorm()
    row_sums, row_norms, skip = norm.row_sums, norm.row_norms, norm.skip_zero_rows

    with torch.no_grad():
        sk = y0.abs().mul(rtol).add_(atol)
        dnf_rows = row_sums((f0 / sk) ** 2)
        dny_rows = row_sums((y0 / sk) ** 2)
        host = (dnf_rows.numel() <= HOST_ROWS_MAX and dnf_rows.dtype == torch.float64
                and dnf_rows.device.type == "cpu")
        if host:  # the rows' first guesses in Python floats, from torch's own square roots
            # (on the CPU not always correctly rounded), so the same numbers
            dnf, dny, root_q = torch.stack(
                (dnf_rows, dny_rows, torch.sqrt(dny_rows / dnf_rows))
            ).tolist()
            h = _first_guess(dnf, dny, root_q, skip)
        else:
            h_rows = _first_guess_rows(dnf_rows, dny_rows)
            if skip and bool((dny_rows > 1e-10).any()):
                # a row whose state is zero (a gradient accumulator that starts at 0) carries
                # no scale for the first guess: the other rows set it, instead of DOPRI5's 1e-6
                h_rows = h_rows[dny_rows > 1e-10]
            h = float(h_rows.min())
        h = min(h, hmax) * direction
        f1 = f(t0 + h, y0 + h * f0)
        der2_rows = row_norms((f1 - f0) / sk) / abs(h)
        # a NaN row makes the max NaN (torch.max propagates it): not finite, as an inf row is
        der12 = float(torch.maximum(der2_rows.abs(), torch.sqrt(dnf_rows)).max())
    if not math.isfinite(der12):
        return 1.0e-6 * direction
    if der12 <= 1e-15:
        h1 = max(1.0e-6, abs(h) * 1.0e-3)
    else:
        h1 = (0.01 / der12) ** (1.0 / order)
    return min(100 * abs(h), h1, hmax) * direction


def _first_guess_rows(dnf: torch.Tensor, dny: torch.Tensor) -> torch.Tensor:
    """Each row's ``0.01 * sqrt(dny / dnf)``, ``1e-6`` for a row with either at most 1e-10."""
    return torch.where(
        (dnf <= 1e-10) | (dny <= 1e-10), torch.full_like(dnf, 1.0e-6), torch.sqrt(dny / dnf) * 0.01
    )


def initial_steps(fb, t0: float, y0: torch.Tensor, f0: torch.Tensor, direction: float,
                  order: int, rtol: float, atol: float, hmax: float) -> torch.Tensor:
    """:func:`initial_step` for every row of ``y0`` ``[B, d]`` on its own, with one batched Euler
    probe ``fb(t [B], y [B, d])``: float64 ``[B]``, signed. The same rules, row by row."""
    norm = RMSNorm(y0.shape[-1])
    with torch.no_grad():
        sk = y0.abs().mul(rtol).add_(atol)
        dnf = norm.row_sums((f0 / sk) ** 2)
        dny = norm.row_sums((y0 / sk) ** 2)
        h = _first_guess_rows(dnf, dny).to(torch.float64).clamp(max=hmax) * direction
        f1 = fb(t0 + h, y0 + h.to(y0.dtype)[:, None] * f0)
        der2 = norm.row_norms((f1 - f0) / sk).to(torch.float64) / h.abs()
        der12 = torch.maximum(der2.abs(), torch.sqrt(dnf).to(torch.float64))
        der12 = torch.where(torch.isnan(der12), math.inf, der12)
        h1 = torch.where(
            der12 <= 1e-15,
            torch.clamp(h.abs() * 1.0e-3, min=1.0e-6),
            (0.01 / der12) ** (1.0 / order),
        )
        out = torch.minimum(torch.minimum(100 * h.abs(), h1), torch.full_like(h1, hmax))
        out = torch.where(torch.isfinite(der12), out, torch.full_like(out, 1.0e-6))
    return out * direction


def clip_to_end(t: float, h: float, t_end: float) -> tuple[float, bool]:
    """Hairer's last-step rule: if ``t + 1.01 h`` passes ``t_end``, take ``h = t_end - t``.

    Returns the step and whether it is the last one; the last step ends exactly at ``t_end``.
    """
    if (t + 1.01 * h - t_end) * h > 0:
        return t_end - t, True
    return h, False


NONFINITE_REJECTIONS = 10
"""Consecutive rejections with an inf/NaN error estimate after which a solve gives up."""


def step_failure(n_attempted: int, max_steps: int, h: float, t: float, eps: float):
    """The checks DOPRI5 makes before each step: ``(status, message)`` when the solve must stop
    (the step budget is spent, or the step fell below the rounding of ``t``), else None."""
    if n_attempted >= max_steps:
        return Status.MAX_STEPS, f"reached max_steps={max_steps} attempted steps at t = {t:g}"
    if abs(h) < 16.0 * eps * abs(t) or h == 0.0:
        return Status.STEP_TOO_SMALL, f"step size {abs(h):.3g} too small at t = {t:g}"
    return None


def nonfinite_failure(bad: int, t: float):
    """After ``bad`` consecutive inf/NaN error estimates: ``(status, message)`` once there are
    :data:`NONFINITE_REJECTIONS` of them, else None."""
    if bad >= NONFINITE_REJECTIONS:
        return Status.NONFINITE, f"the error estimate stayed inf/NaN near t = {t:g}"
    return None
