"""scipy's ``solve_ivp`` methods as reference solvers (no autograd).

Each wraps one of scipy's ``OdeSolver`` classes (``RK45``, ``DOP853``, ``Radau``, ``BDF``,
``LSODA``; Virtanen et al., "SciPy 1.0", Nature Methods 2020) and drives it step by step, as
``solve_ivp`` does, so that the counts are exact and a budget can be enforced:

- ``n_accepted``: the successful ``step()`` calls;
- ``n_rejected``: scipy does not report rejected steps. For the explicit pairs it follows
  exactly from scipy's own ``nfev``: each attempted step of RK45 costs 6 calls and of DOP853
  12, after 2 calls to start (and DOP853's dense output costs 3 more per step that uses it).
  For Radau, BDF and LSODA it is unknown and reported as ``-1`` (``n_steps`` is then the
  accepted steps);
- ``nfe``: the calls of ``f`` this wrapper made, which the harness's counting wrapper sees
  too. That includes the calls for finite-difference Jacobians, which scipy's ``nfev``
  leaves out for Radau and BDF (it counts them in ``njev`` columns instead);
- ``counts`` (implicit methods): scipy's ``njev`` (Jacobian evaluations) and ``nlu`` (LU
  decompositions, our ``ndec``); scipy does not count the solves.

The state is flattened to a float64 vector for scipy; ``f`` is called with a torch tensor of
``y0``'s shape, dtype and device. ``sol.success`` is never ignored: a failure becomes a status
with scipy's message (and a state that is not finite :class:`~solvers.base.Solver`'s
``nonfinite``).
"""

from __future__ import annotations

import numpy as np
import scipy.integrate as si
import torch

from solvers.base import DEFAULT_MAX_STEPS, GradMode, Request, Solution, Solver, Status
from solvers.output import OutputCollector

# method -> (classical order, calls per attempted step or None if not derivable)
METHODS: dict[str, tuple[int, int | None]] = {
    "RK45": (5, 6),
    "DOP853": (8, 12),
    "Radau": (5, None),
    "BDF": (5, None),
    "LSODA": (12, None),
}


def status_of(message: str) -> Status:
    """Map a scipy failure message onto a :class:`Status`."""
    text = message.lower()
    if "less than spacing" in text or ("step size" in text and "small" in text):
        return Status.STEP_TOO_SMALL
    if "excess work" in text:
        return Status.MAX_STEPS
    return Status.ERROR


class ScipyReference(Solver):
    """One ``scipy.integrate`` method, step by step, with exact accepted-step counts."""

    adaptive = True
    differentiable = False
    grad_modes = (GradMode.NONE,)

    def __init__(self, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {sorted(METHODS)}; got {method!r}")
        self.method = method
        self.order, self._calls_per_step = METHODS[method]
        self.name = f"scipy-{method.lower()}"
        implicit = method in ("Radau", "BDF", "LSODA")
        self.kind = "scipy reference, " + ("implicit/stiff" if implicit else "explicit RK")
        self.implicit = implicit
        self.description = f"scipy.integrate.{method}, driven step by step"

    def _solve(self, request: Request) -> Solution:
        """Integrate with scipy; ``rtol`` (default 1e-6), ``atol`` (default 1e-9), ``max_steps``
        (accepted steps, default 100 000). ``n_steps`` is not used by an adaptive method."""
        f, y0, times = request.f, request.y0, request.times
        rtol, atol = request.rtol, request.atol
        max_steps = request.max_steps or DEFAULT_MAX_STEPS
        shape, dtype, device = y0.shape, y0.dtype, y0.device
        calls = 0

        def fun(tt: float, yy: np.ndarray) -> np.ndarray:
            nonlocal calls
            calls += 1
            y = torch.as_tensor(yy, device=device).to(dtype).view(shape)
            return f(float(tt), y).detach().to("cpu", torch.float64).numpy().reshape(-1)

        y_start = y0.detach().to("cpu", torch.float64).reshape(1, -1)
        out = OutputCollector(times, y_start, np.finfo(np.float64).eps)
        status, message = Status.OK, ""
        n_acc = dense_calls = 0
        # numpy's overflow/invalid warnings inside scipy are how a blow-up starts; the status
        # and message report it, so they are silenced rather than printed mid-run
        with torch.no_grad(), np.errstate(all="ignore"):
            try:
                solver = getattr(si, self.method)(
                    fun, times[0], y_start[0].numpy().copy(), times[-1], rtol=rtol, atol=atol
                )
                while solver.status == "running":
                    if n_acc >= max_steps:
                        status = Status.MAX_STEPS
                        message = (
                            f"reached max_steps={max_steps} accepted steps at t = {solver.t:g}"
                        )
                        break
                    msg = solver.step()
                    if solver.status == "failed":
                        status, message = status_of(msg or ""), f"scipy {self.method}: {msg}"
                        break
                    n_acc += 1
                    y_new = torch.from_numpy(solver.y.copy()).reshape(1, -1)
                    interior = out.due(solver.t_old, solver.t, y_new)
                    if interior:
                        before = solver.nfev
                        interp = solver.dense_output()
                        dense_calls += solver.nfev - before
                        vals = interp(np.array([times[j] for j, _ in interior]))
                        out.put(interior, torch.from_numpy(np.ascontiguousarray(vals.T)))
                t_reached = float(solver.t)
            except Exception as exc:  # a numerical routine failing is a result, not a crash
                status, message = Status.ERROR, f"scipy {self.method}: {type(exc).__name__}: {exc}"
                t_reached = times[out.next - 1]
                solver = None
        n_rej = -1
        if solver is not None and self._calls_per_step is not None:
            attempts, rem = divmod(solver.nfev - 2 - dense_calls, self._calls_per_step)
            n_rej = attempts - n_acc if rem == 0 and attempts >= n_acc else -1
        ys = out.stack(y_start).to(device=device, dtype=dtype)
        counts = {}
        if solver is not None and self.implicit:  # scipy counts no forward-backward solves
            counts = {"njev": int(solver.njev), "ndec": int(solver.nlu)}
        return Solution(
            ys=ys.view(len(times), *shape),
            status=status,
            message=message,
            n_steps=n_acc + max(n_rej, 0),
            n_accepted=n_acc,
            n_rejected=n_rej,
            nfe=calls,
            t_reached=t_reached,
            counts=counts,
        )
