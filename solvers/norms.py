"""Error norms: how a step's local error estimate is measured, as objects passed to a solve.

A norm turns the error estimate of a step into one number per step (shared steps) or per
trajectory (a step per trajectory), where at most 1 is within tolerance. Two built-ins:

- :class:`RMSNorm`: Hairer's scaled RMS, ``sqrt(mean((h*err / sk)**2))`` with
  ``sk = atol + rtol*max(|y_old|, |y_new|)`` over one trajectory's components (HNW I, II.4,
  eq. 4.11), the worst trajectory of a batch deciding a shared step (the default);
- :class:`Seminorm`: the same RMS over chosen segments of the flattened state only
  (:data:`Channels`), each segment measured row by row; the elements left out are integrated
  but ignored by step control (Kidger, Chen, Lyons, "Hey, that's not an ODE", ICML 2021).
  The adjoint gradients pass one (:mod:`solvers.gradients.adjoint`).

Each works on tensors (one host sync per step), on Python floats (the ``host`` backend of
:mod:`solvers.rk_host`; :class:`RMSNorm` only) and row by row (:meth:`RMSNorm.rows`, the
per-trajectory loop). :func:`solvers.control.initial_step` measures its rows through the same
object (``row_sums``, ``row_norms``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

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
                f"seminorm segment {tuple(seg)} does not fit a state of {n} elements "
                "(need 0 <= start < stop <= n and state_dim dividing stop - start)"
            )
        out.append((a, b, d))
    if not out:
        raise ValueError("a seminorm must name at least one segment")
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


def _host_sized(err: torch.Tensor) -> bool:
    """Whether the norm of ``err`` is taken in Python floats (a small float64 CPU state)."""
    return err.numel() <= HOST_NORM_MAX and err.dtype == torch.float64 and err.device.type == "cpu"


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
    if _host_sized(err) and channels is None:
        return _error_norm_host(err, h, y_old, y_new, rtol, atol, state_dim or n)
    if torch.is_grad_enabled():  # entering no_grad costs more than the check
        with torch.no_grad():
            return error_norm(err, h, y_old, y_new, rtol, atol, state_dim, channels)
    sk = torch.maximum(y_old.abs(), y_new.abs()).mul_(rtol).add_(atol)
    if channels is not None:
        return _segments(channels, n).worst(err / sk, h)
    return _worst_rms(err, sk, h, state_dim or n)


def _worst_rms(err: torch.Tensor, sk: torch.Tensor, h: float, d: int) -> float:
    """The worst row's RMS of ``err / sk`` (rows of ``d``) times ``|h|``; ``sk`` is overwritten."""
    scaled = torch.div(err.view(sk.shape) if err.shape != sk.shape else err, sk, out=sk)
    flat = scaled.view(-1)
    if d == flat.numel():  # one trajectory
        return math.sqrt(float(torch.dot(flat, flat))) * abs(h) / math.sqrt(d)
    # each trajectory's sum of squares as one matrix product with a column of ones: a reduction
    # over a short last dimension costs several times more on the CPU
    rows = scaled.view(-1, d).square_()
    worst = float(torch.mm(rows, _ones(d, rows)).max())  # the one host sync per step
    return math.sqrt(worst) * abs(h) / math.sqrt(d)


_ONES: dict = {}


def _ones(d: int, like: torch.Tensor) -> torch.Tensor:
    key = (d, like.dtype, like.device)
    hit = _ONES.get(key)
    if hit is None:
        hit = _ONES[key] = torch.ones(d, 1, dtype=like.dtype, device=like.device)
    return hit


class RMSNorm:
    """Hairer's RMS norm, per trajectory (rows of ``state_dim`` elements; None: the solve's
    trajectory size, set by :meth:`bind`), the worst row deciding a shared step."""

    skip_zero_rows = False  # initial_step: every row's scale counts

    def __init__(self, state_dim: int | None = None) -> None:
        self.state_dim = state_dim
        self._abs: tuple = ()  # (state, |state|) of the last call's two states

    def bind(self, n: int, state_dim: int) -> RMSNorm:
        """This norm for one solve of a state of ``n`` elements whose trajectories have
        ``state_dim`` (a fresh object: it remembers the solve's last states)."""
        d = self.state_dim or state_dim
        if n % d:
            raise ValueError(f"RMSNorm(state_dim={d}) does not divide a state of {n} elements")
        return RMSNorm(d)

    def __call__(self, err, h, y_old, y_new, rtol, atol) -> float:
        """:func:`error_norm`; on tensors, ``|y_old|`` is not computed again when ``y_old`` is
        a state of the previous call (the accepted ``y_new``, or the same ``y_old`` after a
        rejection): the same numbers, one op fewer per step."""
        n = err.numel()
        if _host_sized(err) or torch.is_grad_enabled():
            return error_norm(err, h, y_old, y_new, rtol, atol, self.state_dim)
        a_old = next((a for y, a in self._abs if y is y_old), None)
        if a_old is None:
            a_old = y_old.abs()
        a_new = y_new.abs()
        self._abs = ((y_old, a_old), (y_new, a_new))
        sk = torch.maximum(a_old, a_new).mul_(rtol).add_(atol)
        return _worst_rms(err, sk, h, self.state_dim or n)

    def floats(self, err, h, y_old, y_new, rtol, atol) -> float:
        """On Python lists (the ``host`` backend)."""
        return error_norm_floats(err, h, y_old, y_new, rtol, atol, self.state_dim)

    def rows(self, err, h, y_old, y_new, rtol, atol, both=None) -> torch.Tensor:
        """Each row's norm, ``err`` ``[B, d]``, ``h`` ``[B]`` float64: float64 ``[B]``. ``h``
        None: ``err`` already holds ``h * err`` row by row (the per-trajectory loop keeps its
        stages scaled by each row's step). ``err`` is overwritten. ``both``: ``y_old`` and
        ``y_new`` as one ``[2, B, d]`` tensor, where they lie side by side (one ``abs``)."""
        root = math.sqrt(err.shape[-1])  # the RMS's 1/sqrt(d), folded into the scale
        if both is not None:
            sk = torch.amax(both.abs(), 0)
        else:
            sk = torch.maximum(y_old.abs(), y_new.abs())
        norm = torch.linalg.vector_norm(err.div_(sk.mul_(rtol * root).add_(atol * root)), dim=-1)
        if norm.dtype != torch.float64:
            norm = norm.to(torch.float64)
        if h is not None:
            norm.mul_(h.abs())
        return norm

    def row_sums(self, x: torch.Tensor) -> torch.Tensor:
        return _per_trajectory(x, self.state_dim).sum(-1)

    def row_norms(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(_per_trajectory(x, self.state_dim), dim=-1)


class Seminorm:
    """The RMS over the rows of chosen segments (:data:`Channels`) of the flattened state.

    With segments that cover the whole state it is a mixed norm (each part measured at its own
    row length); with segments left out, a seminorm. Checked against the state when bound."""

    skip_zero_rows = True  # initial_step: a row whose state is zero (a gradient accumulator
    # that starts at 0) does not force DOPRI5's 1e-6 first guess while others have a scale

    def __init__(self, channels: Channels) -> None:
        self.channels = channels

    def bind(self, n: int, state_dim: int) -> Seminorm:
        seg = check_channels(self.channels, n)
        return self if seg is self.channels else Seminorm(seg)

    def __call__(self, err, h, y_old, y_new, rtol, atol) -> float:
        return error_norm(err, h, y_old, y_new, rtol, atol, None, self.channels)

    def floats(self, *args) -> float:
        raise TypeError("a seminorm runs on tensors only (the host backend does not take it)")

    def rows(self, *args) -> torch.Tensor:
        raise TypeError("a seminorm measures shared steps only (not a step per trajectory)")

    def row_sums(self, x: torch.Tensor) -> torch.Tensor:
        return _segments(self.channels, x.numel()).row_sums(x)

    def row_norms(self, x: torch.Tensor) -> torch.Tensor:
        return _segments(self.channels, x.numel()).row_norms(x)


Norm = RMSNorm | Seminorm
