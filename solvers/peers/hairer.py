"""Hairer's Fortran codes as scipy ships them: ``hairer-dopri5`` and ``hairer-dop853``.

DOPRI5 (Dormand–Prince 5(4)) and DOP853 (Dormand–Prince 8(5,3)) by E. Hairer and G. Wanner
(Hairer, Nørsett, Wanner, "Solving Ordinary Differential Equations I", 2nd ed., Springer 1993,
II.4-II.6), through ``scipy.integrate.ode(...).set_integrator("dopri5" | "dop853", rtol, atol,
nsteps)``. scipy is a core dependency, so these are always available; no autograd
(``grad_modes = (none,)``).

Output times: scipy's ``ode`` does not expose the codes' dense output (``CONTD5``/``CONTD8``
need ``IOUT=2``; scipy's ``set_solout`` runs them with ``IOUT=1``, which calls back after each
step with the new point only). So we integrate to each requested time in turn
(``ode.integrate(t_i)``): every output time ends a step, and each call restarts the code,
which picks a fresh initial step (``HINIT``, 1 extra call). Step counts therefore differ from a
single solve when ``t`` has more than two points; with ``t = [t0, t1]`` they are exactly
Hairer's. The state is a float64 vector for the Fortran code; ``f`` is called with a torch
tensor of ``y0``'s shape, dtype and device and a float ``t``.

Counts come from the integrator's ``IWORK(17..20)`` (``NFCN``, ``NSTEP``, ``NACCPT``,
``NREJCT``; f2py updates ``iwork`` in place, read back after each call), summed over the calls:
``nfe``, ``n_steps``, ``n_accepted``, ``n_rejected``. ``NREJCT`` leaves out rejections before
the first accepted step of a call, so ``n_rejected`` is ``NSTEP - NACCPT`` instead. Checked
against the calls made (scipy 1.17.1, Lotka–Volterra, rtol = atol = 1e-3/1e-6/1e-9, both codes,
with and without ``solout``): ``NFCN`` equals the calls of ``f``.

``max_steps`` is the code's ``NMAX`` (``nsteps``): attempted steps, the budget shared by all the
calls (each gets what the previous ones left). Failures (``IDID < 0``): -2 -> ``max_steps``;
-3 (step size too small) -> ``step_too_small``; -4 (probably stiff) -> ``stiff``; -1 ->
``error``; each with scipy's message. A state that is not finite is
:class:`~solvers.base.Solver`'s ``nonfinite``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.integrate import ode

from harness.registry import register_solver
from solvers.base import DEFAULT_MAX_STEPS, GradMode, Request, Solution, Solver, Status

CODES: dict[str, int] = {"dopri5": 5, "dop853": 8}  # Hairer's code -> classical order

IDID = {
    -1: (Status.ERROR, "input is not consistent"),
    -2: (Status.MAX_STEPS, "larger nsteps (max_steps) is needed"),
    -3: (Status.STEP_TOO_SMALL, "step size becomes too small"),
    -4: (Status.STIFF, "problem is probably stiff"),
}


class HairerSolver(Solver):
    """Hairer's DOPRI5 or DOP853 through ``scipy.integrate.ode``."""

    adaptive = True
    differentiable = False
    native_loop = True  # f2py's callback goes on after f raises: see solvers.base.Solver
    grad_modes = (GradMode.NONE,)

    def __init__(self, code: str) -> None:
        if code not in CODES:
            raise ValueError(f"`code` must be one of {sorted(CODES)}; got {code!r}")
        self.code = code
        self.order = CODES[code]
        self.name = f"hairer-{code}"
        self.kind = "Hairer's Fortran via scipy.integrate.ode"
        self.description = (
            f"Hairer's {code.upper()} via scipy.integrate.ode; integrates to each output "
            "time in turn, so output times end steps (and restart the code)"
        )

    def _solve(self, request: Request) -> Solution:
        """Integrate with Hairer's code to each time of ``t``; ``rtol`` (default 1e-6), ``atol``
        (default 1e-9), ``max_steps`` (attempted steps, default 100 000)."""
        f, y0, times = request.f, request.y0, request.times
        rtol, atol = request.rtol, request.atol
        budget = request.max_steps or DEFAULT_MAX_STEPS
        shape, dtype, device = y0.shape, y0.dtype, y0.device

        def fun(tt: float, yy: np.ndarray) -> np.ndarray:
            y = torch.as_tensor(yy, device=device).to(dtype).view(shape)
            return f(float(tt), y).detach().to("cpu", torch.float64).numpy().reshape(-1)

        y_start = y0.detach().to("cpu", torch.float64).reshape(-1).numpy().copy()
        out = np.full((len(times), y_start.size), np.nan)
        out[0] = y_start
        counts = np.zeros(4, dtype=np.int64)  # NFCN, NSTEP, NACCPT, NREJCT
        status, message, reached = Status.OK, "", times[0]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scipy warns on IDID < 0; we report
            r = ode(fun).set_integrator(self.code, rtol=rtol, atol=atol, nsteps=budget)
            r.set_initial_value(y_start, times[0])
            iwork = r._integrator.iwork
            for i, ti in enumerate(times[1:], start=1):
                iwork[0] = budget - int(counts[1])  # NMAX: what the previous calls left
                if iwork[0] <= 0:
                    status, message = Status.MAX_STEPS, (
                        f"hairer {self.code}: reached max_steps={budget} at t = {reached:g}"
                    )
                    break
                try:
                    y = r.integrate(ti)
                except Exception as exc:  # f raising, a numerical routine failing: a result
                    status = Status.ERROR
                    message = f"hairer {self.code}: {type(exc).__name__}: {exc}"
                    break
                counts += np.asarray(iwork[16:20], dtype=np.int64)
                idid = int(r.get_return_code())
                if idid < 0:
                    status, why = IDID.get(idid, (Status.ERROR, f"IDID = {idid}"))
                    message = f"hairer {self.code}: {why} (IDID = {idid}) at t = {r.t:g}"
                    reached = float(r.t)
                    break
                out[i] = y
                reached = ti
        ys = torch.from_numpy(out).to(device=device, dtype=dtype).view(len(times), *shape)
        nfcn, nstep, naccpt, _ = (int(c) for c in counts)
        return Solution(
            ys=ys,
            status=status,
            message=message,
            n_steps=nstep,
            n_accepted=naccpt,
            n_rejected=nstep - naccpt,
            nfe=nfcn,
            t_reached=reached,
        )


def _factory(code: str):
    def make() -> HairerSolver:
        return HairerSolver(code)

    make.__doc__ = f"Hairer's {code.upper()} via scipy.integrate.ode (peer)."
    return make


for _code in CODES:
    register_solver(f"hairer-{_code}")(_factory(_code))
