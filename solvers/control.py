"""Step-size control: the initial step and the accept/reject decision with the next step.

Both follow Hairer's DOPRI5 (E. Hairer, G. Wanner, dopri5.f, the code of HNW I, 2nd ed.):

- :func:`initial_step` is DOPRI5's ``HINIT`` (HNW I, II.4, "Starting step size", p. 169);
- :class:`HairerController` is DOPRI5's step-size rule: the I controller
  ``h_new = h * safe * err**(-1/q)``, optionally stabilised by Lund's PI term
  ``facold**beta`` (HNW II, IV.2, eq. 2.43c; Gustafsson 1991), bounded by
  ``fac1 <= h_new/h <= fac2``, with no growth right after a rejection.

The arithmetic is on Python floats and detached from autograd: the solver hands in the error
norm (one ``.item()`` per step) and gets back a float step size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from solvers.base import RHS, Status

Channels = Sequence[tuple[int, int, int]]
"""Segments ``(start, stop, state_dim)`` of the flattened state that the error norm measures.

Each segment ``x[start:stop]`` is viewed as ``[rows, state_dim]`` and every row is measured on
its own, like one trajectory of a batch; the norm is the worst row of all segments. Elements in
no segment are integrated but ignored by step-size control, which is what a *seminorm* is
(Kidger, Chen, Lyons, "Hey, that's not an ODE", ICML 2021). ``None``: one segment, the whole
state with the solver's ``state_dim`` (the default, unchanged behaviour).
"""


def _overlap(channels: list[tuple[int, int, int]]) -> bool:
    spans = sorted((a, b) for a, b, _ in channels)
    return any(b0 > a1 for (_, b0), (a1, _) in zip(spans, spans[1:], strict=False))


def _segments(channels: Channels, n: int) -> Segments:
    """``channels`` as :class:`Segments` (checked once by the solver; built here otherwise)."""
    return channels if isinstance(channels, Segments) else check_channels(channels, n)


def check_channels(channels: Channels, n: int) -> Segments:
    """Validate ``channels`` against a state of ``n`` elements (ValueError naming the problem).

    :class:`Segments` already checked against ``n`` come back as they are (the adjoint checks
    its channels once and solves every output interval with them)."""
    if isinstance(channels, Segments) and channels.n == n:
        return channels
    out = []
    for seg in channels:
        a, b, d = (int(v) for v in seg)
        if not (0 <= a < b <= n) or d < 1 or (b - a) % d:
            raise ValueError(
                f"`error_channels` segment {tuple(seg)} does not fit a state of {n} elements "
                "(need 0 <= start < stop <= n and state_dim dividing stop - start)"
            )
        out.append((a, b, d))
    if not out:
        raise ValueError("`error_channels` must name at least one segment")
    return Segments(out, n)


class Segments(list):
    """Checked :data:`Channels` of a state of ``n`` elements.

    Segments of several rows (trajectories of a batch) are measured row by row as the default
    norm does, with the same arithmetic; consecutive ones that meet end to end with the same
    row length (the adjoint's ``y`` and ``a``) are measured as one, which gives the same rows,
    hence the same worst row, with fewer ops. When there are many one-row segments (the
    adjoint's parameter-gradient channels, one per parameter tensor), those are measured
    together: one ``index_add_`` takes all their sums of squares, instead of a few ops per
    segment."""

    SINGLES_AT_LEAST = 3

    def __init__(self, channels: list[tuple[int, int, int]], n: int) -> None:
        super().__init__(channels)
        self.n = n
        singles = [c for c in channels if c[1] - c[0] == c[2]]
        overlap = _overlap(channels)
        if len(singles) < self.SINGLES_AT_LEAST or overlap:
            singles = []  # overlapping segments are each measured in full, one by one
        multi: list[tuple[int, int, int]] = []
        for c in channels:
            if c in singles:
                continue
            if multi and not overlap and multi[-1][1] == c[0] and multi[-1][2] == c[2]:
                multi[-1] = (multi[-1][0], c[1], c[2])
            else:
                multi.append(c)
        self.multi = multi
        self.singles = singles
        self._lens = [b - a for a, b, _ in singles]
        self._cache: dict = {}

    def _index(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each element's one-row segment (elements of none: a last, ignored slot) and the
        segments' lengths, on ``like``'s device."""
        key = (like.device, like.dtype)
        hit = self._cache.get(key)
        if hit is None:
            ids = torch.full((self.n,), len(self.singles), dtype=torch.long, device=like.device)
            for r, (a, b, _) in enumerate(self.singles):
                ids[a:b] = r
            lens = torch.tensor(self._lens, dtype=like.dtype, device=like.device)
            hit = self._cache[key] = (ids, lens)
        return hit

    def single_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``[len(singles)]``: the sum of ``x`` over each one-row segment."""
        ids, _ = self._index(x)
        out = x.new_zeros(len(self.singles) + 1)
        return out.index_add_(0, ids, x.reshape(-1))[:-1]

    def rows(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The multi-row segments of ``x`` as ``[rows, d]`` views."""
        flat = x.reshape(-1)
        n = self.n
        return [(flat if a == 0 and b == n else flat[a:b]).view(-1, d) for a, b, d in self.multi]

    def row_sums(self, x: torch.Tensor) -> torch.Tensor:
        parts = [r.sum(-1) for r in self.rows(x)]
        if self.singles:
            parts.append(self.single_sums(x))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def row_norms(self, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.linalg.vector_norm(r, dim=-1) for r in self.rows(x)]
        if self.singles:
            parts.append(torch.sqrt(self.single_sums(x * x)))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def worst(self, scaled: torch.Tensor, h: float) -> float:
        """The error norm over the segments of ``scaled`` (the error divided by its scale):
        the worst row's RMS times ``|h|``, with one host sync."""
        parts = [torch.linalg.vector_norm(r, dim=-1).max() for r in self.rows(scaled)]
        if self.singles:
            _, lens = self._index(scaled)
            parts.append((self.single_sums(scaled * scaled) / lens).max())
        vals = [parts[0].item()] if len(parts) == 1 else torch.stack(parts).tolist()
        if any(v != v for v in vals):
            return math.nan
        out = [v * abs(h) / math.sqrt(d) for v, (_, _, d) in zip(vals, self.multi, strict=False)]
        if self.singles:
            out.append(math.sqrt(vals[-1]) * abs(h))
        return max(out)


def _per_trajectory(x: torch.Tensor, state_dim: int | None) -> torch.Tensor:
    """View ``x`` as ``[trajectories, state_dim]``. The last dimension of a solver's ``y0`` is one
    trajectory's state, leading dimensions index independent trajectories of a batch; a solver
    that flattens the state passes ``state_dim`` (None: the whole of ``x`` is one trajectory)."""
    return x.reshape(-1, state_dim or x.numel())


HOST_NORM_MAX = 16
"""States of at most this many float64 elements on the CPU take the norm in Python floats."""


def _flat(x: torch.Tensor) -> list[float]:
    if x.dim() == 2 and x.shape[0] == 1:  # the RK engine's rows [1, N]
        return x.tolist()[0]
    return x.detach().reshape(-1).tolist()


def _error_norm_host(
    err: torch.Tensor,
    h: float,
    y_old: torch.Tensor,
    y_new: torch.Tensor,
    rtol: float,
    atol: float,
    d: int,
) -> float:
    """:func:`error_norm` of a small CPU float64 state, in Python floats: copying a few numbers
    out costs less than the eight tensor ops."""
    return error_norm_floats(_flat(err), h, _flat(y_old), _flat(y_new), rtol, atol, d)


def error_norm_floats(
    err: list[float],
    h: float,
    y_old: list[float],
    y_new: list[float],
    rtol: float,
    atol: float,
    d: int,
) -> float:
    """:func:`error_norm` on Python floats (IEEE double arithmetic as torch's, with its NaN
    propagation and division by zero), rows of ``d`` elements, the worst row. The sum of
    squares is summed in order, as DOPRI5 does; torch's reduction may fuse multiply-adds, so the
    two can differ in the last bit."""
    worst = acc = 0.0
    k = 0
    for ei, ai, bi in zip(err, y_old, y_new, strict=True):
        ai, bi = abs(ai), abs(bi)
        sk = (ai if ai >= bi or ai != ai else bi) * rtol + atol  # torch.maximum keeps NaN
        if sk != 0.0:
            q = ei / sk
        else:
            q = math.nan if ei == 0.0 or ei != ei else math.inf
        acc += q * q
        k += 1
        if k == d:  # end of one trajectory's row
            norm = math.sqrt(acc)
            if norm != norm:  # a NaN row wins, as in torch's max
                return math.nan
            if norm > worst:
                worst = norm
            acc, k = 0.0, 0
    return worst * abs(h) / math.sqrt(d)


def error_norm(
    err: torch.Tensor,
    h: float,
    y_old: torch.Tensor,
    y_new: torch.Tensor,
    rtol: float,
    atol: float,
    state_dim: int | None = None,
    channels: Channels | None = None,
) -> float:
    """Hairer's scaled RMS norm of the local error estimate ``|h| * err``, worst trajectory.

    For one trajectory: ``sqrt(mean((h*err / sk)**2))`` with ``sk = atol + rtol*max(|y_old|,
    |y_new|)`` over its N components, as DOPRI5 does (HNW I, II.4, eq. 4.11). For a batch
    (leading dimensions), the maximum of the per-trajectory norms: every trajectory meets its
    tolerance, and a batch of identical trajectories steps exactly as one trajectory does
    (an RMS over the whole batch would let one bad trajectory hide among good ones).
    ``h`` is factored out of the tensor work. Returns a Python float (NaN/inf when the state is
    not finite); detached from autograd. With ``channels`` (see :data:`Channels`), the worst
    RMS over the rows of the given segments only (a mixed norm, or a seminorm when segments are
    left out).
    """
    n = err.numel()
    small = n <= HOST_NORM_MAX and err.dtype == torch.float64 and err.device.type == "cpu"
    if small and channels is None:
        return _error_norm_host(err, h, y_old, y_new, rtol, atol, state_dim or n)
    if torch.is_grad_enabled():  # entering no_grad costs more than the check
        with torch.no_grad():
            return error_norm(err, h, y_old, y_new, rtol, atol, state_dim, channels)
    sk = torch.maximum(y_old.abs(), y_new.abs()).mul_(rtol).add_(atol)
    if channels is not None:
        return _segments(channels, n).worst(err / sk, h)
    scaled = err / sk
    d = state_dim or scaled.numel()
    if scaled.dim() != 2 or scaled.shape[-1] != d:
        scaled = scaled.reshape(-1, d)  # one row per trajectory
    norms = torch.linalg.vector_norm(scaled, dim=-1)
    if scaled.shape[0] > 1:
        norms = norms.max()
    return float(norms) * abs(h) / math.sqrt(d)  # the one host sync per step


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
    state_dim: int | None = None,
    channels: Channels | None = None,
) -> float:
    """DOPRI5's ``HINIT``: a first step from one explicit Euler probe (costs one ``f`` call).

    ``h = 0.01 * ||y0|| / ||f0||`` (or ``1e-6`` when either is tiny), an Euler step to estimate
    the second derivative, then ``h1 = (0.01 / max(||f0||, ||y''||))**(1/order)`` and
    ``h = min(100 h, h1, hmax)``. The norms are weighted root-sums-of-squares with
    ``sk = atol + rtol*|y0|``, *not* divided by the dimension, exactly as in DOPRI5
    (so the result matches Hairer's code). For a batch, each trajectory's norms are taken
    separately: the probe uses the smallest trajectory's first guess and the result is the
    smallest trajectory's step, so identical trajectories start exactly as one does.
    With ``channels``, the rows are those of the segments (see :data:`Channels`), and rows whose
    state is zero do not force the ``1e-6`` first guess while others have a scale (the adjoint's
    parameter-gradient channels start at zero).
    Returns the signed step.
    """

    seg = None if channels is None else _segments(channels, y0.numel())

    def row_sums(x: torch.Tensor) -> torch.Tensor:
        if seg is None:
            return _per_trajectory(x, state_dim).sum(-1)
        return seg.row_sums(x)

    def row_norms(x: torch.Tensor) -> torch.Tensor:
        if seg is None:
            return torch.linalg.vector_norm(_per_trajectory(x, state_dim), dim=-1)
        return seg.row_norms(x)

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
            h = _first_guess(dnf, dny, root_q, channels is not None)
        else:
            h_rows = torch.where(
                (dnf_rows <= 1e-10) | (dny_rows <= 1e-10),
                torch.full_like(dnf_rows, 1.0e-6),
                torch.sqrt(dny_rows / dnf_rows) * 0.01,
            )
            if channels is not None and bool((dny_rows > 1e-10).any()):
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


@dataclass
class HairerController:
    """DOPRI5's step-size controller (defaults are DOPRI5's own, and scipy's ``dopri5``).

    ``safe``, ``fac1`` (smallest ratio ``h_new/h``), ``fac2`` (largest), ``beta`` (Lund
    stabilisation; 0 gives the plain I controller). scipy's ``ode(...).set_integrator("dopri5")``
    passes ``beta=0.0`` into ``WORK(5)``, which DOPRI5 reads as "use the default 0.04", so
    0.04 is what scipy's dopri5 actually runs with (a negative value would give 0).
    ``q`` is the order of the error estimate plus one (5 for DOPRI5's 4th-order estimate).
    """

    q: int = 5
    safe: float = 0.9
    fac1: float = 0.2
    fac2: float = 10.0
    beta: float = 0.04
    hmax: float = math.inf
    facold: float = 1.0e-4
    rejected_last: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 0.2:
            raise ValueError(f"`beta` must lie in [0, 0.2]; got {self.beta}")
        if not 0.0 < self.safe < 1.0:
            raise ValueError(f"`safe` must lie in (0, 1); got {self.safe}")
        if not 0.0 < self.fac1 <= 1.0 <= self.fac2:
            raise ValueError(f"need 0 < `fac1` <= 1 <= `fac2`; got {self.fac1}, {self.fac2}")
        self._expo1 = 1.0 / self.q - 0.75 * self.beta

    def decide(self, err: float, h: float) -> tuple[bool, float]:
        """Given the error norm of a step of size ``h``, return (accepted, next signed step).

        A non-finite ``err`` is a rejection with the strongest shrink ``fac1``.
        """
        if not math.isfinite(err):
            self.rejected_last = True
            return False, h * self.fac1
        fac11 = err**self._expo1
        if err <= 1.0:
            fac = fac11 / self.facold**self.beta
            fac = max(1.0 / self.fac2, min(1.0 / self.fac1, fac / self.safe))
            h_new = h / fac
            self.facold = max(err, 1.0e-4)
            if abs(h_new) > self.hmax:
                h_new = math.copysign(self.hmax, h)
            if self.rejected_last:
                h_new = math.copysign(min(abs(h_new), abs(h)), h)
            self.rejected_last = False
            return True, h_new
        self.rejected_last = True
        return False, h / min(1.0 / self.fac1, fac11 / self.safe)


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
