"""The Neural ODE paper's Table 1 in miniature: MLP, ResNet, RK-Net and ODE-Net on 8x8 digits.

Chen, Rubanova, Bettencourt, Duvenaud, "Neural ordinary differential equations", NeurIPS 2018,
section 3 and Table 1 compare, on MNIST, a 1-layer MLP, a ResNet of 6 residual blocks, an
"RK-Net" (the ResNet's blocks replaced by one ODE block, gradients backpropagated through a
Runge-Kutta solver) and the "ODE-Net" (the same ODE block trained by the adjoint): test error,
parameters, memory (O(L) for the ResNet, O(L~) for the RK-Net, L~ = the solver's evaluations,
O(1) for the adjoint) and time. Here the same comparison runs on scikit-learn's bundled 8x8
digits (1,797 images, no download) in seconds: every model shares one stem and one head,

- stem ``Linear(64, w)`` on the standardised pixels; head ``ReLU, Linear(w, 10)``;
- ``mlp``: stem and head only, 64 -> w -> 10, one hidden layer (the paper's 1-layer MLP,
  784 -> 300 -> 10 from LeCun et al. 1998: 784*300 + 300 + 300*10 + 10 = 0.24 M parameters);
- ``resnet``: L residual blocks ``h + g_l(h)`` with untied weights between stem and head;
- ``odenet``: one ODE block ``dh/dt = g(h)`` on [0, 1] (one ``g``, tied weights), solved by the
  case's solver in the case's gradient mode. With ``euler`` and ``n_steps = L`` it *is* the
  tied-weight ResNet ``h + (1/L) g(h)``, to the bit (the same fused ``torch.add``). The field
  is autonomous (the paper's concatenates ``t`` to its convolutions' input).

``g(h) = Linear(w, w)(tanh(Linear(w, w)(h)))``. Parameters, for width w and L blocks
(the default task, w = 32, L = 6, in brackets)::

    stem 65 w      head 10 w + 10      g 2 w^2 + 2 w
    mlp     75 w + 10                   [  2,410]
    resnet  75 w + 10 + L (2 w^2 + 2 w)  [ 15,082]
    odenet  75 w + 10 + 2 w^2 + 2 w      [  4,522]

:data:`TABLE1` lists the rows (model, solver, gradient mode, setting) and :data:`PAPER_TABLE1`
the paper's figures; :func:`run_digits_case` trains one row and returns its result fields and
per-iteration records. Memory is measured as the bytes autograd saves for backward
(:func:`saved_bytes_scaling`): per block (resnet), per step (fixed-step odenet) or per function
evaluation (adaptive odenet), a least-squares slope that is exactly 0 for the adjoint; the mlp
has no depth to grow and reports its one constant. The task is registered as ``digits``; it
needs scikit-learn (the data ship with it).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.measure.memory import cuda_peak_bytes, cuda_peak_reset
from harness.measure.nfe import CountingRHS, Deadline
from harness.measure.saved import SavedBytes
from harness.registry import register_task
from solvers.base import GradMode, Solver, Status

MODELS = ("mlp", "resnet", "odenet")
NO_SOLVER = "none"  # the solver of the rows without an ODE block (mlp, resnet)
N_PIXELS = 64
N_CLASSES = 10


@dataclass(frozen=True)
class DigitsTask:
    """Table 1 on scikit-learn's digits, as data (see the module docstring).

    The split is a seeded stratified ``train_test_split`` (``test_fraction`` held out); an epoch
    is ``n_train // batch_size`` minibatches of a seeded permutation (the remainder is left
    out). ``optimiser``: ``adam`` or ``sgd`` (momentum 0.9, as torchdiffeq's odenet_mnist).
    The saved-bytes scaling measures ``saved_sizes`` blocks/steps (resnet, fixed-step odenet)
    or ``saved_tols`` (adaptive odenet); the tolerance ladder ``eval_rtol`` (rtol = atol) of an
    adaptive ODE block is measured against ``dopri5`` at ``reference_tol`` in float64.
    """

    name: str = "digits"
    seed: int = 0
    test_fraction: float = 0.25
    width: int = 32
    L: int = 6
    batch_size: int = 64
    optimiser: str = "adam"
    lr: float = 1e-2
    schedule: str = "cosine"  # the learning rate over the planned steps: cosine | constant
    epochs: int = 8  # the default suite's
    full_epochs: int = 40  # --suite full
    quick_epochs: int = 1  # --suite quick
    t_span: tuple[float, float] = (0.0, 1.0)
    saved_sizes: tuple[int, ...] = (2, 4, 8, 16)
    saved_tols: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    eval_rtol: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
    reference_tol: float = 1e-10
    tags: frozenset[str] = frozenset({"classification", "table-1"})
    description: str = ""
    citation: str = ""

    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_train, y_train, x_test, y_test)``: float64 pixels standardised by the training
        set's mean and standard deviation (two scalars), int64 labels."""
        return _split(self.seed, self.test_fraction)

    def make_optimiser(self, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimiser == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        if self.optimiser == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9)
        raise ValueError(f"task {self.name!r}: unknown optimiser {self.optimiser!r}; "
                         "use adam or sgd")

    def make_schedule(self, opt: torch.optim.Optimizer,
                      steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        """``cosine``: ``lr * (1 + cos(pi k / steps)) / 2`` at step ``k`` (Loshchilov & Hutter,
        "SGDR", ICLR 2017, without restarts), so the last steps barely move the weights and
        the test error is that of a settled model; ``constant``: ``lr`` throughout."""
        if self.schedule == "cosine":
            n = max(steps, 1)
            return torch.optim.lr_scheduler.LambdaLR(
                opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, n) / n)))
        if self.schedule == "constant":
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
        raise ValueError(f"task {self.name!r}: unknown schedule {self.schedule!r}; "
                         "use cosine or constant")


@functools.cache
def _split(seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError("the training task 'digits' needs scikit-learn, whose bundled 8x8 "
                          "digits it trains on: pip install scikit-learn") from exc

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    mean, std = x_train.mean(), x_train.std()  # one scalar each: the pixels keep their scale
    parts = ((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)
    for a in parts:
        a.setflags(write=False)
    return parts


# ---------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class BlockSolve:
    """How an ODE block is solved: a registered solver, a gradient mode and its setting."""

    solver: str
    grad_mode: str = "backprop"
    n_steps: int | None = None
    rtol: float | None = None
    atol: float | None = None
    max_steps: int | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"rtol": self.rtol, "atol": self.atol, "n_steps": self.n_steps,
                "max_steps": self.max_steps}


def residual_function(width: int) -> nn.Sequential:
    """``g(h) = Linear(w, w)(tanh(Linear(w, w)(h)))``: a residual block's or the ODE's field."""
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))


class Autonomous(nn.Module):
    """``f(t, h) = g(h)``: the ODE block's field (``t`` is ignored)."""

    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        self.g = g

    def forward(self, t: Any, h: torch.Tensor) -> torch.Tensor:
        return self.g(h)


class ResNetBody(nn.Module):
    """L residual blocks ``h <- h + g_l(h)``, each ``g_l`` its own weights (He et al. 2016)."""

    def __init__(self, width: int, n_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(residual_function(width) for _ in range(n_blocks))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for g in self.blocks:
            h = torch.add(h, g(h))
        return h


class ODEBlock(nn.Module):
    """``h(1)`` of ``dh/dt = g(h)``, ``h(t0) = h``, on ``t_span``, by ``solve``.

    Every call of the field goes through ``rhs`` (the harness's counter, which also meets the
    case's deadline); ``last`` is the latest solve's :class:`solvers.gradients.GradSolve`, so
    the caller can read its status and, after the backward pass, the backward record. Under
    ``torch.no_grad`` the block solves with gradient mode ``none``.
    """

    def __init__(self, g: nn.Module, solver: Solver, solve: BlockSolve,
                 t_span: tuple[float, float], deadline: Deadline | None = None) -> None:
        super().__init__()
        from solvers.gradients import check_mode

        self.field = Autonomous(g)
        self.rhs = CountingRHS(self.field, deadline)
        self.solver = solver
        self.mode = check_mode(solver, solve.grad_mode)
        self.solve = solve
        self.t_span = t_span
        self.last: Any = None

    def times(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.t_span, dtype=like.dtype, device=like.device)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        from solvers.gradients import odeint

        mode = self.mode if torch.is_grad_enabled() else GradMode.NONE
        params = tuple(p for p in self.field.parameters() if p.requires_grad)
        self.last = odeint(self.solver, self.rhs, h, self.times(h), mode=mode, params=params,
                           **self.solve.kwargs())
        return self.last.ys[-1]


class DigitsNet(nn.Module):
    """``head(body(stem(x)))``; ``body`` is the identity (mlp), a ResNet or an ODE block."""

    def __init__(self, kind: str, stem: nn.Module, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.kind = kind
        self.stem = stem
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))

    @property
    def ode_block(self) -> ODEBlock | None:
        return self.body if isinstance(self.body, ODEBlock) else None


def build_model(kind: str, task: DigitsTask, solve: BlockSolve | None = None,
                deadline: Deadline | None = None) -> DigitsNet:
    """The untrained model ``kind`` (one of :data:`MODELS`), initialised from torch's global
    generator (the caller seeds it). ``solve``: the ODE block's solver and gradient mode
    (required for ``odenet``; for ``mlp`` and ``resnet`` its solver must be ``none`` and its
    mode ``backprop``, and a resnet's ``n_steps``, when given, is its number of blocks instead
    of ``task.L``)."""
    if kind not in MODELS:
        raise ValueError(f"unknown Table-1 model {kind!r}; use one of {', '.join(MODELS)}")
    w = task.width
    stem = nn.Linear(N_PIXELS, w)
    body: nn.Module
    if kind == "odenet":
        if solve is None or solve.solver == NO_SOLVER:
            raise ValueError("model 'odenet' needs a solver for its ODE block (e.g. dopri5)")
        from harness import plugins, registry

        plugins.load_defaults()
        body = ODEBlock(residual_function(w), registry.make_solver(solve.solver), solve,
                        task.t_span, deadline)
    else:
        if solve is not None and solve.solver != NO_SOLVER:
            raise ValueError(f"model {kind!r} has no ODE block: its solver must be "
                             f"{NO_SOLVER!r}, not {solve.solver!r}")
        if solve is not None and solve.grad_mode != GradMode.BACKPROP:
            raise ValueError(f"model {kind!r} is trained by autograd: its gradient mode must "
                             f"be 'backprop', not {solve.grad_mode!r}")
        depth = solve.n_steps if solve is not None else None
        if kind == "mlp" and depth is not None:
            raise ValueError(f"model 'mlp' has no blocks to count: n_steps must be unset, "
                             f"not {depth!r}")
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise ValueError(f"a resnet's n_steps (its blocks) must be a positive int; "
                             f"got {depth!r}")
        body = ResNetBody(w, depth or task.L) if kind == "resnet" else nn.Identity()
    head = nn.Sequential(nn.ReLU(), nn.Linear(w, N_CLASSES))
    return DigitsNet(kind, stem, body, head)


def count_params(model: nn.Module) -> int:
    """The number of trainable scalars (a tied ``g`` counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_formula(kind: str, width: int, n_blocks: int) -> int:
    """The parameter count of :func:`build_model`'s ``kind`` by hand (the module docstring)."""
    stem_head = (N_PIXELS + 1) * width + (width + 1) * N_CLASSES
    g = 2 * (width * width + width)
    return stem_head + {"mlp": 0, "resnet": n_blocks * g, "odenet": g}[kind]


# ---------------------------------------------------------------------------------------------
# Table 1


@dataclass(frozen=True)
class Table1Entry:
    """One row of the miniature Table 1; ``paper`` names its row of :data:`PAPER_TABLE1`."""

    model: str
    solver: str
    grad_mode: str
    n_steps: int | None
    rtol: float | None
    atol: float | None
    label: str
    paper: str | None = None


@dataclass(frozen=True)
class PaperRow:
    """A row of the paper's Table 1 (MNIST); ``memory``/``time`` as printed, ``-`` for none."""

    label: str
    test_error: float  # a fraction
    n_params: float
    memory: str
    time: str


_L = DigitsTask().L
TABLE1: tuple[Table1Entry, ...] = (
    Table1Entry("mlp", NO_SOLVER, "backprop", None, None, None, "1-layer MLP", "1-layer MLP"),
    Table1Entry("resnet", NO_SOLVER, "backprop", _L, None, None, "ResNet", "ResNet"),
    Table1Entry("odenet", "euler", "backprop", _L, None, None, "ResNet (tied) = euler"),
    Table1Entry("odenet", "rk4", "backprop", 2, None, None, "RK-Net (rk4)", "RK-Net"),
    Table1Entry("odenet", "dopri5", "backprop", None, 1e-3, 1e-3, "RK-Net (dopri5)", "RK-Net"),
    Table1Entry("odenet", "dopri5", "adjoint", None, 1e-3, 1e-3, "ODE-Net (dopri5, adjoint)",
                "ODE-Net"),
)
"""The rows: ``rtol = atol = 1e-3`` is torchdiffeq's odenet_mnist default tolerance."""

PAPER_CITATION = ("Chen, Rubanova, Bettencourt, Duvenaud, \"Neural ordinary differential "
                  "equations\", NeurIPS 2018, Table 1 (MNIST; the MLP row from LeCun et al. "
                  "1998); L = layers, L~ = the ODE solver's function evaluations")
PAPER_TABLE1: tuple[PaperRow, ...] = (
    PaperRow("1-layer MLP", 0.0160, 0.24e6, "-", "-"),
    PaperRow("ResNet", 0.0041, 0.60e6, "O(L)", "O(L)"),
    PaperRow("RK-Net", 0.0047, 0.22e6, "O(L~)", "O(L~)"),
    PaperRow("ODE-Net", 0.0042, 0.22e6, "O(1)", "O(L~)"),
)
"""The paper's figures, cited by :data:`PAPER_CITATION`."""


# ---------------------------------------------------------------------------------------------
# Memory scaling and the tolerance ladder


@dataclass(frozen=True)
class Scaling:
    """Peak bytes saved for backward as the model grows: ``points`` ``[[units, bytes], ...]``
    and the least-squares ``slope`` in bytes per unit (None with fewer than two distinct
    units: the MLP has nothing to grow)."""

    unit: str
    points: list[list[float]]
    slope: float | None


def saved_bytes_of(model: DigitsNet, x: torch.Tensor,
                   labels: torch.Tensor) -> tuple[int, int] | None:
    """``(peak saved bytes, forward NFE)`` of one forward and backward pass of the loss (NFE 0
    without an ODE block); None where the ODE block's forward or backward solve fails."""
    block = model.ode_block
    if block is not None:
        block.rhs.reset()
    with SavedBytes() as probe:
        loss = F.cross_entropy(model(x), labels)
        nfe = block.rhs.calls if block is not None else 0
        if block is not None and block.last.solution.status != Status.OK:
            return None
        loss.backward()
    model.zero_grad(set_to_none=True)
    if block is not None and block.last.backward.status != Status.OK:
        return None
    return probe.peak_bytes, nfe


def saved_bytes_scaling(model: DigitsNet, task: DigitsTask, x: torch.Tensor,
                        labels: torch.Tensor) -> Scaling:
    """Saved bytes of ``model``'s architecture on one minibatch as its depth grows.

    ``resnet``: fresh seeded ResNets of ``task.saved_sizes`` blocks (unit ``block``); a
    fixed-step ``odenet``: ``model`` with ``n_steps`` in ``task.saved_sizes`` (``step``); an
    adaptive one: ``model`` at ``rtol = atol`` in ``task.saved_tols``, units its forward NFE
    (``NFE``); ``mlp``: its one constant (``model``). Backprop's bytes grow with the units,
    the adjoint's do not (Chen et al. 2018, Table 1's memory column).
    """
    like = next(model.parameters())
    points: list[list[float]] = []
    block = model.ode_block
    if model.kind == "mlp":
        unit = "model"
        points.append([1, saved_bytes_of(model, x, labels)[0]])
    elif model.kind == "resnet":
        unit = "block"
        for n in task.saved_sizes:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(task.seed)
                m = build_model("resnet", task, BlockSolve(NO_SOLVER, n_steps=n))
            m = m.to(dtype=like.dtype, device=like.device)
            points.append([n, saved_bytes_of(m, x, labels)[0]])
    else:
        original = block.solve
        adaptive = bool(getattr(block.solver, "adaptive", False))
        unit = "NFE" if adaptive else "step"
        try:
            for s in task.saved_tols if adaptive else task.saved_sizes:
                change = {"rtol": s, "atol": s} if adaptive else {"n_steps": s}
                block.solve = dataclasses.replace(original, **change)
                measured = saved_bytes_of(model, x, labels)
                if measured is not None:  # a solve that fails (its max_steps) adds no point
                    points.append([measured[1] if adaptive else s, measured[0]])
        finally:
            block.solve = original
    return Scaling(unit, points, _slope(points))


def _slope(points: list[list[float]]) -> float | None:
    u = np.array([p[0] for p in points], dtype=np.float64)
    b = np.array([p[1] for p in points], dtype=np.float64)
    du = u - u.mean()
    if not (du != 0).any():
        return None
    return float(du @ (b - b.mean()) / (du @ du))  # exactly 0.0 when the bytes are constant


@dataclass(frozen=True)
class Ladder:
    """Figure 3 (a), (b) of Chen et al. 2018 for a trained ODE block: at each ``rtol`` (=
    ``atol``) the forward NFE, the max absolute error of ``h(1)`` against the reference and
    the forward wall time (NaN error where the solve failed)."""

    rtol: list[float]
    nfe: list[int]
    err: list[float]
    time_s: list[float]


def tolerance_ladder(block: ODEBlock, h0: torch.Tensor, rtols: tuple[float, ...],
                     reference_tol: float) -> Ladder:
    """The ladder of ``block`` from the states ``h0`` (the stem's output on a test batch); the
    reference is the same field in float64 solved by ``dopri5`` at ``reference_tol``."""
    from harness import registry

    t = block.times(h0)
    field64 = copy.deepcopy(block.field).to(torch.float64)
    ref_solver = registry.make_solver("dopri5")
    with torch.no_grad():
        ref = ref_solver.solve(CountingRHS(field64, block.rhs.deadline), h0.to(torch.float64),
                               t.to(torch.float64), rtol=reference_tol, atol=reference_tol)
        if ref.status != Status.OK:
            raise RuntimeError(f"the reference solve of the ladder failed: {ref.message}")
        nfe, err, times = [], [], []
        for r in rtols:
            block.rhs.reset()
            w0 = time.perf_counter()
            sol = block.solver.solve(block.rhs, h0, t, rtol=r, atol=r,
                                     max_steps=block.solve.max_steps)
            _sync(h0.device)
            times.append(time.perf_counter() - w0)
            nfe.append(block.rhs.calls)
            ok = sol.status == Status.OK
            e = (sol.ys[-1].to(torch.float64) - ref.ys[-1]).abs().max() if ok else None
            err.append(float(e) if e is not None else math.nan)
    return Ladder(list(rtols), nfe, err, times)


# ---------------------------------------------------------------------------------------------
# Training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unknown dtype {name!r}; use float32 or float64")
    return dtype


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


class _Failure(Exception):
    """A solver failed (or the loss became non-finite): ends training with this status."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _check(status: Status | str, message: str, where: str, iteration: int) -> None:
    if Status(status) != Status.OK:
        raise _Failure(Status(status), f"{where}: {message} at iteration {iteration}")


def _train_step(model: DigitsNet, opt: torch.optim.Optimizer, x: torch.Tensor,
                labels: torch.Tensor, iteration: int, epoch: int, probe: bool,
                deadline: Deadline | None) -> dict[str, Any]:
    """One optimiser step and its record; raises :class:`_Failure` before stepping when the
    forward solve, the loss or the backward pass fails."""
    if deadline is not None:
        deadline.check()
    block = model.ode_block
    device = x.device
    if block is not None:
        block.rhs.reset()
    cuda_peak_reset(device)
    saved: int | None = None
    w0 = time.perf_counter()
    with SavedBytes() if probe else contextlib.nullcontext() as meter:
        loss = F.cross_entropy(model(x), labels)
        value = float(loss.detach())
        w1 = time.perf_counter()
        nfe_forward = nfe_backward = None
        if block is not None:
            nfe_forward = block.rhs.calls
            block.rhs.reset()
            sol = block.last.solution
            _check(sol.status, sol.message, "forward solve", iteration)
        if not math.isfinite(value):
            raise _Failure(Status.NONFINITE, f"the training loss is {value} at iteration "
                           f"{iteration}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        w2 = time.perf_counter()
        if block is not None:
            nfe_backward = block.rhs.calls
            back = block.last.backward
            _check(back.status, back.message, "backward pass", iteration)
        if probe:
            saved = meter.peak_bytes
    grads = [torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None]
    if grads and not bool(torch.stack(grads).all()):  # one host sync for all of them
        raise _Failure(Status.NONFINITE, f"the gradient has inf/NaN entries at iteration "
                       f"{iteration}")
    opt.step()
    _sync(device)
    w3 = time.perf_counter()
    return {
        "iteration": iteration,
        "epoch": epoch,
        "loss": value,
        "nfe_forward": nfe_forward,
        "nfe_backward": nfe_backward,
        "time_forward_s": w1 - w0,
        "time_backward_s": w2 - w1,
        "time_step_s": w3 - w2,
        "saved_bytes": saved,
        "cuda_peak_bytes": cuda_peak_bytes(device),
    }


def _solve_of(case: Any) -> BlockSolve:
    return BlockSolve(solver=case.solver, grad_mode=case.grad_mode, n_steps=case.n_steps,
                      rtol=case.rtol, atol=case.atol, max_steps=getattr(case, "max_steps", None))


def run_digits_case(case: Any, task: DigitsTask, deadline: Deadline | None,
                    progress: Callable[[str], None] | None = None, *, seed: int = 0,
                    max_iterations: int | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Train ``case.model`` on the digits for ``case.epochs`` epochs (None: ``task.epochs``)
    in ``case.dtype`` on ``case.device``; returns the row's fields and the records.

    Seeded throughout, so a rerun repeats every loss: the weights and the shuffling from
    ``training.loop.seeds(task.seed, seed)`` (``seed``: the run's ``--seed``; the weights
    under a forked global generator, the shuffling from its own); the split is the task's
    alone. Minibatches are ``task.batch_size`` (the suite's case carries the same). Each step
    appends a record (``harness.results.RECORD_FIELDS``); the first step of every epoch runs
    under the saved-bytes probe, whose hooks slow it, so ``time_iter_median_s`` is the median
    of the others. A solver that fails, or a non-finite loss or gradient, ends training with
    that status and ``iteration_reached`` (the steps completed); the case's deadline raises
    ``CaseTimeout`` through here. ``max_iterations`` caps the planned steps (tests).
    After training: the test error, the saved-bytes scaling of the architecture
    (:func:`saved_bytes_scaling`) and, for an adaptive solver, the tolerance ladder of the
    trained block (:func:`tolerance_ladder`).
    """
    kind = getattr(case, "model", "") or ""
    epochs = getattr(case, "epochs", None)
    epochs = task.epochs if epochs is None else int(epochs)
    dtype, device = _dtype(case.dtype), torch.device(case.device)
    from training.loop import seeds

    weight_seed, batch_seed = seeds(task.seed, seed)
    solve = _solve_of(case)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(weight_seed)
        model = build_model(kind, task, solve, deadline)
    model = model.to(dtype=dtype, device=device)
    opt = task.make_optimiser(model.parameters())
    x_np, y_np, xt_np, yt_np = task.split()
    x_train = torch.tensor(x_np, dtype=dtype, device=device)
    y_train = torch.tensor(y_np, device=device)
    gen = torch.Generator().manual_seed(batch_seed)
    per_epoch = len(y_np) // task.batch_size
    planned = epochs * per_epoch
    if max_iterations is not None:
        planned = min(planned, max_iterations)
    sched = task.make_schedule(opt, planned)

    records: list[dict[str, Any]] = []
    epoch_times: list[float] = []
    status, message = Status.OK, ""
    for e in range(epochs):
        if len(records) >= planned:
            break
        if progress is not None:
            progress(f"epoch {e + 1}/{epochs}")
        order = torch.randperm(len(y_np), generator=gen).to(device)
        e0 = time.perf_counter()
        try:
            for b in range(per_epoch):
                if len(records) >= planned:
                    break
                idx = order[b * task.batch_size : (b + 1) * task.batch_size]
                records.append(_train_step(model, opt, x_train[idx], y_train[idx],
                                           len(records), e, b == 0, deadline))
                sched.step()
        except _Failure as fail:
            status, message = fail.status, fail.message
            break
        if len(records) == (e + 1) * per_epoch:
            epoch_times.append(time.perf_counter() - e0)

    row = _summary(model, records, planned, epochs, epoch_times, status, message)
    if status == Status.OK:
        # copies: a slice's storage is the whole training set, which the probe would count
        row.update(_evaluate(model, task, x_train[: task.batch_size].clone(),
                             y_train[: task.batch_size].clone(),
                             torch.tensor(xt_np, dtype=dtype, device=device),
                             torch.tensor(yt_np, device=device)))
    return row, records


def _summary(model: DigitsNet, records: list[dict[str, Any]], planned: int, epochs: int,
             epoch_times: list[float], status: Status, message: str) -> dict[str, Any]:
    losses = [r["loss"] for r in records]
    has_nfe = model.ode_block is not None
    nfe_f = [r["nfe_forward"] for r in records] if has_nfe else []
    nfe_b = [r["nfe_backward"] for r in records] if has_nfe else []
    probed = [r["saved_bytes"] for r in records if r["saved_bytes"] is not None]
    iter_s = [r["time_forward_s"] + r["time_backward_s"] + r["time_step_s"] for r in records]
    unprobed = [s for s, r in zip(iter_s, records, strict=True) if r["saved_bytes"] is None]
    return {
        "model": model.kind,
        "iterations": planned,
        "iteration_reached": len(records),
        "epochs": epochs,
        "loss_first": losses[0] if losses else None,
        "loss_final": losses[-1] if losses else None,
        "loss_best": min(losses) if losses else None,
        "test_error": None,
        "n_params": count_params(model),
        "nfe": sum(nfe_f) if has_nfe else None,
        "nfe_backward": sum(nfe_b) if has_nfe else None,
        "nfe_iter_median": _median(nfe_f),
        "nfe_backward_iter_median": _median(nfe_b),
        "time_train_s": sum(iter_s),
        "time_iter_median_s": _median(unprobed),
        "time_epoch_s": _median(epoch_times),
        "mem_saved_bytes": max(probed) if probed else None,
        "saved_bytes_scaling": None,
        "saved_bytes_unit": None,
        "saved_bytes_per_unit": None,
        "status": str(status),
        "message": message,
        "eval_rtol": None,
        "eval_nfe": None,
        "eval_err": None,
        "eval_time_s": None,
    }


def _evaluate(model: DigitsNet, task: DigitsTask, x_fixed: torch.Tensor, y_fixed: torch.Tensor,
              x_test: torch.Tensor, y_test: torch.Tensor) -> dict[str, Any]:
    """The trained model's test error, saved-bytes scaling and (adaptive) tolerance ladder."""
    out: dict[str, Any] = {}
    block = model.ode_block
    with torch.no_grad():
        logits = model(x_test)
    if block is not None and block.last.solution.status != Status.OK:
        sol = block.last.solution
        return {"status": str(sol.status), "message": f"test-set solve: {sol.message}"}
    out["test_error"] = float((logits.argmax(dim=1) != y_test).to(torch.float64).mean())
    scaling = saved_bytes_scaling(model, task, x_fixed, y_fixed)
    out.update(saved_bytes_scaling=scaling.points, saved_bytes_unit=scaling.unit,
               saved_bytes_per_unit=scaling.slope)
    if block is not None and getattr(block.solver, "adaptive", False):
        with torch.no_grad():
            h0 = model.stem(x_test[: task.batch_size])
        ladder = tolerance_ladder(block, h0, task.eval_rtol, task.reference_tol)
        out.update(eval_rtol=ladder.rtol, eval_nfe=ladder.nfe, eval_err=ladder.err,
                   eval_time_s=ladder.time_s)
    return out


DIGITS = DigitsTask(
    description="scikit-learn's 8x8 digits (1,797 images; a seeded stratified 75/25 split), "
    "classified by a 1-layer MLP, a ResNet of 6 residual blocks, and one ODE block "
    "dh/dt = g(h) on [0, 1] (RK-Net: backprop through the solver; ODE-Net: the adjoint); "
    "pixels standardised, width 32, batches of 64, cross-entropy, Adam(lr=1e-2) on a cosine "
    "schedule, 8 epochs (full 40, quick 1); seeded",
    citation=PAPER_CITATION + "; data: scikit-learn load_digits (UCI optical recognition of "
    "handwritten digits, Alpaydin & Kaynak 1998)",
)

register_task("digits")(lambda: DIGITS)
