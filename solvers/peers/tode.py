"""torchode's solvers as peers: ``to-dopri5``, ``to-dopri5-pid``, ``to-tsit5``.

torchode (Lienen & Günnemann, "torchode: A parallel ODE solver for PyTorch", NeurIPS 2022
workshop "The Symbiosis of Deep Learning and Differential Equations";
https://github.com/martenlienen/torchode), tested with 1.0.1, through its public API:
``ODETerm``, ``Dopri5``/``Tsit5``, ``IntegralController``/``PIDController``, ``AutoDiffAdjoint``
and ``InitialValueProblem``.

- ``to-dopri5``: Dormand–Prince 5(4) with torchode's ``IntegralController`` (the classical
  I controller);
- ``to-dopri5-pid``: the same method with its ``PIDController``, coefficients
  ``pcoeff=0.2, icoeff=0.5, dcoeff=0.0`` (torchode's README example);
- ``to-tsit5``: Tsitouras 5(4) with the ``IntegralController``.

torchode solves a batch ``[B, n]`` with *per-trajectory* steps (each trajectory has its own
step size and accept/reject decisions; every call of ``f`` evaluates the whole batch). Our
``y0`` (``[n]`` or ``[*batch, n]``) is reshaped to ``[B, n]`` and the output back to
``[len(t), *y0.shape]``; the output times go in as ``t_eval`` expanded to ``[B, len(t)]`` and
torchode interpolates to them (they do not force its steps). Since each trajectory has its own
clock, ``f`` gets ``t`` as a tensor of shape ``y0.shape[:-1] + (1,)``, broadcastable against
``y`` (0-d for one trajectory), as :mod:`solvers.per_trajectory` does.

Counts, from torchode's ``stats`` (tensors per trajectory): ``nfe`` = ``n_f_evals``, which is
the same for every trajectory (torchode counts calls of ``f``, each of which evaluates the whole
batch), so the maximum is taken; it equals the harness's count. ``n_steps``/``n_accepted``: the
trajectory that took the most steps (the solve loop runs that many times), ``n_rejected`` its
rejections. Status: torchode's codes (``SUCCESS``, ``GENERAL_ERROR``, ``REACHED_DT_MIN``,
``REACHED_MAX_STEPS``, ``INFINITE_NORM``) map to ``ok``, ``error``, ``step_too_small``,
``max_steps``, ``nonfinite``; the batch's status is the first failing trajectory's, and output
times a trajectory did not reach are NaN (outputs that are not finite after a ``SUCCESS`` are
:class:`~solvers.base.Solver`'s ``nonfinite``). ``max_steps`` is torchode's ``max_steps``:
attempted steps of each trajectory.

Gradient modes: ``backprop`` (torchode's ``AutoDiffAdjoint``: autograd through its steps). It
also has ``BacksolveAdjoint``, which vmaps a per-sample VJP with ``torch.func.functional_call``
over ``f`` (an ``nn.Module`` whose parameters are all it depends on); that does not fit fields
that close over tensors or a counting wrapper, so it is not offered here.
"""

from __future__ import annotations

import torch

from harness.registry import register_solver
from solvers.base import DEFAULT_MAX_STEPS, GradMode, Request, Solution, Solver, Status
from solvers.peers import optional_import

MISSING: list[str] = []
torchode = optional_import("torchode", MISSING)

# name -> (step method class name, controller, order)
METHODS: dict[str, tuple[str, str, int]] = {
    "to-dopri5": ("Dopri5", "integral", 5),
    "to-dopri5-pid": ("Dopri5", "pid", 5),
    "to-tsit5": ("Tsit5", "integral", 5),
}
PID = {"pcoeff": 0.2, "icoeff": 0.5, "dcoeff": 0.0}

# torchode's status codes (torchode.status_codes) -> ours
STATUS = {0: Status.OK, 1: Status.ERROR, 2: Status.STEP_TOO_SMALL, 3: Status.MAX_STEPS,
          4: Status.NONFINITE}


class TorchodeSolver(Solver):
    """One torchode method + controller behind our contract."""

    adaptive = True
    differentiable = True
    grad_modes = (GradMode.NONE, GradMode.BACKPROP)

    def __init__(self, name: str) -> None:
        if torchode is None:
            raise RuntimeError("torchode is not installed: pip install 'odebench[peers]'")
        self.name = name
        self._method, self._controller, self.order = METHODS[name]
        ctrl = "PID controller" if self._controller == "pid" else "integral controller"
        self.kind = f"torchode, adaptive ({ctrl})"
        self.description = (
            f"torchode {torchode.__version__} {self._method} with its {ctrl}; "
            "per-trajectory steps"
        )

    def _solve(self, request: Request) -> Solution:
        """``AutoDiffAdjoint(...).solve``; ``rtol``/``atol``/``max_steps`` as documented above;
        ``n_steps`` is not used by an adaptive method."""
        f, y0, t = request.f, request.y0, request.t
        rtol, atol, max_steps = request.rtol, request.atol, request.max_steps
        if y0.ndim == 0:
            raise ValueError("`y0` must have at least one dimension (the state)")
        shape = y0.shape
        batch_shape, n = shape[:-1], shape[-1]
        y_rows = y0.reshape(-1, n)
        B = y_rows.shape[0]
        # f sees each trajectory's time broadcastable against y (0-d for one trajectory)
        t_shape = (*batch_shape, 1) if batch_shape else ()

        def field(tt: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
            return f(tt.reshape(t_shape), yy.reshape(shape)).reshape(B, n)

        term = torchode.ODETerm(field)
        step = getattr(torchode, self._method)(term=term)
        if self._controller == "pid":
            ctrl = torchode.PIDController(atol=atol, rtol=rtol, term=term, **PID)
        else:
            ctrl = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
        solver = torchode.AutoDiffAdjoint(step, ctrl, max_steps=max_steps or DEFAULT_MAX_STEPS)
        t_eval = t.to(y0.dtype).unsqueeze(0).expand(B, -1)
        problem = torchode.InitialValueProblem(y0=y_rows, t_eval=t_eval)
        try:
            out = solver.solve(problem)
        except Exception as exc:  # a peer failing is a result, not a crash
            ys = torch.full((len(t), *shape), float("nan"), dtype=y0.dtype, device=y0.device)
            ys[0] = y0.detach()
            return Solution(ys=ys, status=Status.ERROR, t_reached=float(t[0]),
                            message=f"torchode {self._method}: {type(exc).__name__}: {exc}")
        return self._solution(out, t, shape)

    def _solution(self, out, t: torch.Tensor, shape: torch.Size) -> Solution:
        stats = out.stats
        codes = out.status.tolist()  # one sync, after the solve
        n_init = stats["n_initialized"].tolist()
        ys = out.ys  # [B, T, n]
        status, message = Status.OK, ""
        for b, code in enumerate(codes):
            if code != 0:
                status = STATUS.get(int(code), Status.ERROR)
                name = torchode.Status(int(code)).name if int(code) in STATUS else str(code)
                message = f"torchode {self._method}: trajectory {b} ended with {name}"
                break
        if status != Status.OK or min(n_init) < len(t):
            mask = torch.arange(len(t), device=ys.device)[None, :] >= torch.tensor(
                n_init, device=ys.device
            )[:, None]
            ys = ys.masked_fill(mask[..., None], float("nan"))
        steps = stats["n_steps"]
        worst = int(torch.argmax(steps))
        n_steps = int(steps[worst])
        n_acc = int(stats["n_accepted"][worst])
        reached = min(n_init)
        return Solution(
            ys=ys.transpose(0, 1).reshape(len(t), *shape),
            status=status,
            message=message,
            n_steps=n_steps,
            n_accepted=n_acc,
            n_rejected=n_steps - n_acc,
            nfe=int(stats["n_f_evals"].max()),
            t_reached=float(t[reached - 1]) if reached > 0 else float(t[0]),
        )


def _factory(name: str):
    def make() -> TorchodeSolver:
        return TorchodeSolver(name)

    make.__doc__ = f"torchode's {METHODS[name][0]} ({METHODS[name][1]} controller, peer)."
    return make


if torchode is not None:
    for _name in METHODS:
        register_solver(_name)(_factory(_name))
