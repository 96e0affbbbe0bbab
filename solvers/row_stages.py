"""The batched stepper and output collection of the per-trajectory loop
(:mod:`solvers.per_trajectory`): a step of every trajectory of a batch at once, each with its
own step size, and the dense outputs of the last few iterations evaluated together.

:class:`RowStages` keeps the stages scaled by each row's step (``K[i] = h[b] * k_i``), so a
stage input is one ``addmv`` (or ``add``) over the rows of ``K`` and the error estimate one
``mv``; without autograd the stages, the state and the stage inputs live in a ring of buffers
written in place, with autograd the same ops run out of place. :class:`RowOutputs` evaluates
the continuous extension for the (trajectory, output) pairs that accepted steps reached.
"""

from __future__ import annotations

import math

import torch

from solvers.tableaux import ButcherTableau


def _plan(weights: list[float], like: torch.Tensor) -> tuple[bool, int, object]:
    """``y + sum_j w_j K_j`` as ``(True, j, w)`` (one nonzero weight: an ``add``) or
    ``(False, n, w [n])`` (an ``addmv`` over the first ``n`` rows of ``K``)."""
    nonzero = [j for j, w in enumerate(weights) if w != 0.0]
    if len(nonzero) == 1:
        return (True, nonzero[0], weights[nonzero[0]])
    n = nonzero[-1] + 1 if nonzero else 1
    return (False, n, torch.tensor(weights[:n], dtype=like.dtype, device=like.device))


class RowStages:
    """The stages of one attempted step of every row, scaled by each row's step.

    Without autograd (``recorded`` False) everything lives in a ring of ``slots`` buffers
    ``Z`` ``[slots, s + 2, B, d]`` written in place: iteration ``m`` (mod ``slots``) keeps its
    scaled stages ``K = Z[m, :s]``, then ``y`` and ``y1``, so that one gather takes all that the
    dense outputs of the last ``slots`` iterations need; ``f``'s output goes into ``K`` by the
    ``mul`` that scales it, and the accepted rows' ``y1`` into the next slot's ``y``. With
    autograd the same ops run out of place on fresh tensors (one slot). With FSAL, the unscaled
    first stage ``k1`` is carried from step to step."""

    def __init__(self, tableau: ButcherTableau, f, shape, y: torch.Tensor, k1: torch.Tensor,
                 h_cols: list[torch.Tensor], slots: int, recorded: bool) -> None:
        B, d = y.shape
        s = tableau.stages
        dt, dev = y.dtype, y.device
        self.f, self.shape, self.bd, self.s = f, shape, (B, d), s
        self.fsal, self.recorded, self.slots = tableau.fsal, recorded, slots
        self.nfe = 0
        a = tableau.a_rows()
        b = [float(x) for x in tableau.b]
        # stage inputs 1..s-1; with FSAL the last one is y1 itself (b's weights)
        self.plans = [_plan(b[:i] if (self.fsal and i == s - 1) else a[i], y) for i in range(1, s)]
        self.b = None if self.fsal else _plan(b, y)
        self.e = torch.tensor([float(x) for x in tableau.b_err], dtype=dt, device=dev)
        deg = max(map(len, tableau.dense))
        # dense weights over the rows of Z: b_i(theta) = sum_j P[j, i] theta^(j+1) for the
        # stages, then 1 for y and 0 for y1 (`base`); an output at a step's end takes y1 alone
        P = torch.zeros(deg, s + 2, dtype=dt, device=dev)
        for i, r in enumerate(tableau.dense):
            P[: len(r), i] = torch.tensor([float(x) for x in r], dtype=dt)
        self.P_rows = list(P.split(1))  # [1, s + 2] each
        self.base = torch.zeros(1, s + 2, dtype=dt, device=dev)
        self.base[0, s] = 1.0
        self.at_end = torch.zeros(1, s + 2, dtype=dt, device=dev)
        self.at_end[0, s + 1] = 1.0
        # each stage's times t + c_i h, float64 [s, B] (and in y's dtype for f)
        self.c = torch.tensor([[float(x)] for x in tableau.c], dtype=torch.float64, device=dev)
        self.tc = torch.empty(s, B, dtype=torch.float64, device=dev)
        self.tcd = self.tc if dt == torch.float64 else torch.empty(s, B, dtype=dt, device=dev)
        t_shape = (*shape[:-1], 1) if len(shape) > 1 else ()
        self.tv = [self.tcd[i].view(t_shape) for i in range(s)]
        self.h_cols = h_cols  # each slot's step row over [B, d] (the loop writes the rows)
        self.hb = y.new_empty(B, d)  # the step over its row, in y's dtype
        self.mask = torch.empty(B, d, dtype=torch.bool, device=dev)
        self.m = 0  # the slot of this iteration
        self.k1 = k1
        self.k_last = k1
        if recorded:
            self.y, self.y1 = y, y
            self.ks: list[torch.Tensor] = []
            return
        self.Z = y.new_empty(slots, s + 2, B, d)
        self.Z[0, s].copy_(y)
        self.views = [self._views(m) for m in range(slots)]
        self.v = self.views[0]
        self.y = self.v["y"]
        self.Z_rows = self.Z.view(-1, d)
        self.stage_rows = torch.arange(s + 2, device=dev) * B
        self.err = y.new_empty(B, d)
        self.err_flat = self.err.view(-1)
        if self.fsal:
            self.k1 = k1.clone()

    def _views(self, m: int) -> dict:
        """Slot ``m``'s buffers and the arguments of its ops, made once."""
        Z, s, (B, d), shape = self.Z, self.s, self.bd, self.shape
        K = list(Z[m].unbind(0))  # [B, d] each
        y, y1 = K[s], K[s + 1]
        rows = Z[m].view(s + 2, B * d)
        user = (lambda x: x) if tuple(shape) == (B, d) else (lambda x: x.view(shape))
        yin = y.new_empty(B, d)  # a stage input

        def combine(plan, out):
            one, j, w = plan
            if one:
                return (True, y.view(-1), w, rows[j], out.view(-1))
            return (False, y.view(-1), w, rows[:j].T, out.view(-1))

        steps = []  # per stage: the combination, f's input, its time, K[i]
        for i, plan in enumerate(self.plans, start=1):
            out = y1 if (self.fsal and i == s - 1) else yin
            steps.append((*combine(plan, out), user(out), self.tv[i], K[i]))
        return dict(
            y=y, y1=y1, y_next=Z[(m + 1) % self.slots, s], first=(user(y), self.tv[0], K[0]),
            steps=steps, final=None if self.b is None else combine(self.b, y1),
            stages_T=rows[:s].T, both=Z[m, s:],
        )

    def _call(self, t: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        k = self.f(t, yi)
        return k if k.shape == self.bd else k.reshape(self.bd)

    def step(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Every stage of a step of size ``h`` (the loop's step row of this slot; 0 for rows
        that stand still) from ``t``; returns ``y1`` ``[B, d]``."""
        with torch.no_grad():
            if self.recorded:  # autograd keeps the last step's for the backward pass
                self.hb = torch.empty_like(self.hb)
            hb = self.hb.copy_(self.h_cols[self.m])
            torch.mul(self.c, h, out=self.tc).add_(t)  # t + c_i * h, as the shared loop
            if self.tcd is not self.tc:
                self.tcd.copy_(self.tc)
        if self.recorded:
            return self._step_graph(hb)
        v = self.v
        y0, t0, K0 = v["first"]
        k1 = self.k1 if self.fsal else self._call(t0, y0)
        torch.mul(k1, hb, out=K0)
        call = self._call
        k = k1
        for one, x, w, kk, out, yi, ti, Ki in v["steps"]:
            if one:
                torch.add(x, kk, alpha=w, out=out)
            else:
                torch.addmv(x, kk, w, out=out)
            k = call(ti, yi)
            torch.mul(k, hb, out=Ki)
        if self.fsal:
            self.k_last = k
        else:
            one, x, w, kk, out = v["final"]
            if one:
                torch.add(x, kk, alpha=w, out=out)
            else:
                torch.addmv(x, kk, w, out=out)
        return v["y1"]

    def _step_graph(self, hb: torch.Tensor) -> torch.Tensor:
        """:meth:`step` out of place (autograd records it): the same ops on fresh tensors."""
        y, s, shape = self.y, self.s, self.shape
        k1 = self.k1 if self.fsal else self._call(self.tv[0], y.view(shape))
        ks = self.ks = [k1 * hb]
        y1 = k = None
        for i, plan in enumerate(self.plans, start=1):
            yi = self._combined(plan, ks)
            if self.fsal and i == s - 1:
                y1 = yi
            k = self._call(self.tv[i], yi.view(shape))
            ks.append(k * hb)
        if self.fsal:
            self.k_last = k
        else:
            y1 = self._combined(self.b, ks)
        self.y1 = y1
        return y1

    def _combined(self, plan: tuple, ks: list[torch.Tensor]) -> torch.Tensor:
        one, j, w = plan
        y = self.y
        if one:
            return torch.add(y, ks[j], alpha=w)
        kk = torch.stack(ks[:j]).view(j, -1).T
        return torch.addmv(y.view(-1), kk, w).view(self.bd)

    def states(self) -> torch.Tensor | None:
        """This slot's ``y`` and ``y1`` as one ``[2, B, d]`` view (None with autograd)."""
        return None if self.recorded else self.v["both"]

    def error(self) -> torch.Tensor:
        """``h[b] * sum_i e_i k_i`` per row, ``[B, d]`` (the norm may overwrite it)."""
        if self.recorded:
            with torch.no_grad():
                ks = torch.stack(self.ks).view(self.s, -1)
                return torch.mv(ks.T, self.e).view(self.bd)
        torch.mv(self.v["stages_T"], self.e, out=self.err_flat)
        return self.err

    def dense(self, pairs: torch.Tensor, theta: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """The continuous extension ``y + sum_i b_i(theta) K_i`` at ``theta`` (in ``y``'s dtype)
        for each of ``pairs`` (``slot * B + row``, may repeat), ``y1`` itself where ``end``.
        Small elementwise ops (Horner's rule for the weights, a gather, a product summed):
        on a CPU the BLAS calls for these sizes cost more, and wait for threads."""
        th = theta[:, None]
        P = self.P_rows
        W = P[-1]
        for Pj in reversed(P[:-1]):
            W = torch.addcmul(Pj, th, W)
        W = torch.addcmul(self.base, th, W)  # [n, s + 2]: the stages', y's and y1's weights
        W = torch.where(end[:, None], self.at_end, W)
        s2, (B, d) = self.s + 2, self.bd
        if self.recorded:
            rows = torch.stack([*self.ks, self.y, self.y1]).index_select(1, pairs)
            rows = rows.transpose(0, 1)
        else:  # Z[slot, :, row] as rows of Z viewed [slots * (s + 2) * B, d]
            slot = torch.div(pairs, B, rounding_mode="floor")
            first = torch.add(pairs, slot, alpha=(s2 - 1) * B)[:, None]
            rows = self.Z_rows.index_select(0, (first + self.stage_rows).view(-1))
            rows = rows.view(-1, s2, d)
        return (W[:, :, None] * rows).sum(1)

    def accept(self, accepted: torch.Tensor) -> None:
        """The next iteration's ``y``: the accepted rows' ``y1``, the others' ``y`` (and, FSAL,
        the first stage: the last one's where accepted); then on to the next slot."""
        mask = self.mask if not self.recorded else torch.empty_like(self.mask)
        mask.copy_(accepted[:, None].expand(self.bd))
        if self.recorded:
            self.y = torch.where(mask, self.y1, self.y)
            if self.fsal:
                self.k1 = torch.where(mask, self.k_last, self.k1)
            return
        v = self.v
        torch.where(mask, v["y1"], v["y"], out=v["y_next"])
        if self.fsal:
            torch.where(mask, self.k_last, self.k1, out=self.k1)
        self.m = (self.m + 1) % self.slots
        self.v = self.views[self.m]
        self.y = self.v["y"]


class RowOutputs:
    """The outputs due in the iterations of one turn of the ring, evaluated together.

    ``due[m]`` ``[B]`` counts the outputs the rows reached in slot ``m``'s iteration; each
    (slot, row, output) is a pair, and :meth:`flush` evaluates all pairs at once: the new state
    where an output is at a step's end (within rounding), else the continuous extension."""

    def __init__(self, eng: RowStages, clock: torch.Tensor, T: torch.Tensor, y: torch.Tensor,
                 slots: int, rel: float) -> None:
        self.eng, self.clock, self.T, self.rel = eng, clock, T, rel
        B = self.B = y.shape[0]
        lng = dict(dtype=torch.long, device=y.device)
        self.due = torch.zeros(slots, B, **lng)
        self.pairs = torch.arange(slots * B, **lng)  # slot * B + row
        self.out_j, self.out_p, self.out_v = [torch.zeros(B, **lng)], [self.pairs[:B]], [y]

    def flush(self, next_out: torch.Tensor, single: bool) -> None:
        """Evaluate the pairs since the last flush (``next_out``: each row's next output after
        them; ``single``: no row had more than one output due in one iteration)."""
        due = self.due
        n = int(due.sum())  # a host sync, once per turn of the ring
        if not n:
            return
        B, T, clock = self.B, self.T, self.clock
        cum = due.cumsum(0)
        start = next_out - cum[-1]  # each row's next output at the last flush
        first = cum.sub_(due).add_(start).view(-1)  # each (slot, row)'s first output
        flat = due.view(-1)
        if single:
            pair = flat.nonzero().view(-1)
            j = first.index_select(0, pair)
        else:
            pair = torch.repeat_interleave(self.pairs, flat, output_size=n)
            first.sub_(flat.cumsum(0).sub_(flat))  # less the index of its first pair
            j = first.index_select(0, pair).add_(torch.arange(n, device=pair.device))
        tj = T.index_select(0, j)
        t, h, mx = clock.index_select(1, pair).unbind(0)
        t1 = clock[0].index_select(0, pair + B)  # the times after the steps: the next slot's
        theta = (tj - t).div_(h)
        end = (tj - t1).abs_() <= mx.mul_(self.rel)
        self.out_j.append(j)
        self.out_p.append(pair)
        self.out_v.append(self.eng.dense(pair, theta.to(self.out_v[0].dtype), end))
        due.zero_()

    def gathered(self, nT: int, recorded: bool) -> torch.Tensor:
        """``[nT, B, d]``: the outputs (NaN where a row did not get there)."""
        y = self.out_v[0]
        ys = y.new_full((nT, self.B, y.shape[-1]), math.nan)
        index = (torch.cat(self.out_j), torch.cat(self.out_p).remainder_(self.B))
        values = torch.cat(self.out_v)
        return ys.index_put(index, values) if recorded else ys.index_put_(index, values)
