"""Training tasks: a neural ODE fitted to data from a known system, described as data.

A :class:`Task` says everything a training case needs, and nothing about the solver or the
gradient mode it is trained under (the case brings those):

- ``system``: the true dynamics, its initial value and the observation times; the data are its
  solution there, computed once per process with scipy's DOP853 at rtol = atol = 1e-12;
- ``data``: how a minibatch is drawn (windows of consecutive observations, how many);
- ``model``: the learned vector field (a small MLP, how its input is transformed, how its
  weights are initialised);
- ``optimiser``, ``iterations`` (the default suite's, ``full``'s and ``quick``'s), ``seed``;
- ``target_loss``: the training loss whose first crossing gives the "time to target".

Register one with :func:`harness.registry.register_task` (a plugin file does it as for a
problem); :func:`spiral` and :func:`lotka_volterra` are the built-ins.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from harness.registry import register_task


@dataclass(frozen=True)
class System:
    """The true dynamics ``dy/dt = rhs(t, y)`` (numpy, for the data solve), from ``y0``,
    observed at ``n_points`` equally spaced times on ``[0, t_end]``."""

    rhs: Callable[[float, np.ndarray], np.ndarray]
    y0: tuple[float, ...]
    t_end: float
    n_points: int
    description: str = ""

    @property
    def dim(self) -> int:
        return len(self.y0)


@dataclass(frozen=True)
class Data:
    """Minibatches: ``batch`` windows of ``window`` consecutive observations, their starts drawn
    without replacement from ``range(n_points - window)`` (as torchdiffeq's ``ode_demo`` does);
    each window is solved from its first observation."""

    window: int = 10
    batch: int = 20


@dataclass(frozen=True)
class Model:
    """The learned field ``f(t, y) = Linear(width, dim)(act(Linear(dim, width)(g(y))))``, with
    ``hidden`` such hidden layers; ``g`` is ``transform`` (``"identity"`` or ``"cube"``,
    elementwise ``y**3``). Weights ~ N(0, ``init_std``^2), biases zero."""

    width: int = 50
    hidden: int = 1
    activation: str = "tanh"
    transform: str = "identity"
    init_std: float = 0.1


@dataclass(frozen=True)
class Optimiser:
    name: str = "rmsprop"  # rmsprop | adam
    lr: float = 1e-3


@dataclass(frozen=True)
class Task:
    """A training task (see the module docstring)."""

    name: str
    system: System
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    optimiser: Optimiser = field(default_factory=Optimiser)
    iterations: int = 300  # the default suite's (and the train suite's)
    full_iterations: int = 2000  # --suite full
    quick_iterations: int = 5  # --suite quick
    seed: int = 0
    # the first iteration at which the mean training loss of the last `target_window`
    # iterations is at most `target_loss` gives the time to target
    target_loss: float = 0.1
    target_window: int = 10
    loss: str = "mae"  # mean absolute error over the window, as ode_demo
    tags: frozenset[str] = frozenset()
    description: str = ""
    citation: str = ""

    def true_trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t, ys)``, float64 numpy, ``ys`` of shape ``[n_points, dim]``."""
        return _trajectory(self.system)

    def make_field(self, dtype: torch.dtype = torch.float64, device: str = "cpu") -> MLPField:
        """The untrained field, initialised from torch's generator (the caller seeds it)."""
        return MLPField(self.system.dim, self.model).to(dtype=dtype, device=device)

    def make_optimiser(self, params) -> torch.optim.Optimizer:
        o = self.optimiser
        if o.name == "rmsprop":
            return torch.optim.RMSprop(params, lr=o.lr)
        if o.name == "adam":
            return torch.optim.Adam(params, lr=o.lr)
        raise ValueError(f"task {self.name!r}: unknown optimiser {o.name!r}; use rmsprop or adam")

    def loss_of(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "mae":
            return torch.mean(torch.abs(pred - target))
        if self.loss == "mse":
            return torch.mean((pred - target) ** 2)
        raise ValueError(f"task {self.name!r}: unknown loss {self.loss!r}; use mae or mse")


_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}


class MLPField(nn.Module):
    """``f(t, y)``: the task's MLP on ``transform(y)`` (autonomous: ``t`` is ignored)."""

    def __init__(self, dim: int, spec: Model) -> None:
        super().__init__()
        if spec.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {spec.activation!r}; use one of "
                             f"{', '.join(_ACTIVATIONS)}")
        if spec.transform not in ("identity", "cube"):
            raise ValueError(f"unknown transform {spec.transform!r}; use identity or cube")
        layers: list[nn.Module] = []
        width_in = dim
        for _ in range(spec.hidden):
            layers += [nn.Linear(width_in, spec.width), _ACTIVATIONS[spec.activation]()]
            width_in = spec.width
        layers.append(nn.Linear(width_in, dim))
        self.net = nn.Sequential(*layers)
        self.cube = spec.transform == "cube"
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=spec.init_std)
                nn.init.constant_(m.bias, val=0.0)

    def forward(self, t, y: torch.Tensor) -> torch.Tensor:
        return self.net(y**3 if self.cube else y)


@functools.cache
def _trajectory(system: System) -> tuple[np.ndarray, np.ndarray]:
    from scipy.integrate import solve_ivp

    t = np.linspace(0.0, system.t_end, system.n_points)
    sol = solve_ivp(system.rhs, (0.0, system.t_end), np.asarray(system.y0, dtype=np.float64),
                    method="DOP853", t_eval=t, rtol=1e-12, atol=1e-12)
    if not sol.success:  # pragma: no cover - the built-in systems are smooth
        raise RuntimeError(f"the data solve failed: {sol.message}")
    ys = sol.y.T.copy()
    ys.setflags(write=False)
    return t, ys


# ---------------------------------------------------------------------------------------------
# spiral: torchdiffeq's examples/ode_demo.py

SPIRAL_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral_rhs(t: float, y: np.ndarray) -> np.ndarray:
    """``dy/dt = (y**3) @ A`` (a row vector times A, as in ode_demo)."""
    return (y**3) @ SPIRAL_A


SPIRAL = Task(
    name="spiral",
    system=System(spiral_rhs, y0=(2.0, 0.0), t_end=25.0, n_points=1000,
                  description="dy/dt = (y**3) @ A, A = [[-0.1, 2], [-2, -0.1]], y0 = (2, 0), "
                  "1000 points on [0, 25]"),
    data=Data(window=10, batch=20),
    model=Model(width=50, hidden=1, activation="tanh", transform="cube", init_std=0.1),
    optimiser=Optimiser("rmsprop", lr=1e-3),
    iterations=300,
    full_iterations=2000,
    quick_iterations=5,
    seed=0,
    # the 10-iteration mean loss of dopri5 (1e-7, backprop) passes 0.02 near iteration 60
    target_loss=0.02,
    tags=frozenset({"spiral", "ode-demo"}),
    description="the set-up of torchdiffeq's examples/ode_demo.py: windows of 10 points, "
    "batches of 20, Linear(2, 50)-tanh-Linear(50, 2) on y**3, mean absolute error, "
    "RMSprop(lr=1e-3); seeded",
    citation="torchdiffeq, examples/ode_demo.py (Chen et al., NeurIPS 2018)",
)


# ---------------------------------------------------------------------------------------------
# lotka-volterra: the predator-prey system of problems/, fitted by a small MLP on y


def _lv_rhs(t: float, y: np.ndarray) -> np.ndarray:
    from problems.nonstiff import lotka_volterra_rhs

    return lotka_volterra_rhs(t, y)


LOTKA_VOLTERRA = Task(
    name="lotka-volterra",
    system=System(_lv_rhs, y0=(1.0, 1.0), t_end=10.0, n_points=400,
                  description="x' = 1.5 x - x y, y' = -3 y + x y, y0 = (1, 1), 400 points on "
                  "[0, 10] (the problem lotka-volterra)"),
    data=Data(window=10, batch=20),
    model=Model(width=32, hidden=1, activation="tanh", transform="identity", init_std=0.1),
    optimiser=Optimiser("adam", lr=1e-2),
    iterations=300,
    full_iterations=2000,
    quick_iterations=5,
    seed=0,
    # the 10-iteration mean loss of dopri5 (1e-7, backprop) passes 0.05 near iteration 210
    target_loss=0.05,
    tags=frozenset({"predator-prey"}),
    description="the Lotka-Volterra system of the problem lotka-volterra, fitted by "
    "Linear(2, 32)-tanh-Linear(32, 2) on y; windows of 10 points, batches of 20, mean "
    "absolute error, Adam(lr=1e-2); seeded",
    citation="Lotka 1925, Volterra 1926; the problem lotka-volterra",
)

register_task("spiral")(lambda: SPIRAL)
register_task("lotka-volterra")(lambda: LOTKA_VOLTERRA)
