"""Training a neural ODE on the spiral: one iteration, ours against torchdiffeq, interleaved.

The task is ``spiral`` (:data:`training.tasks.SPIRAL`, torchdiffeq's ``examples/ode_demo.py``):
windows of 10 observations, batches of 20, the field Linear(2, 50)-tanh-Linear(50, 2) on
``y**3``, mean absolute error, RMSprop. Float64 on the CPU, rtol = 1e-7, atol = 1e-9
(``ode_demo``'s defaults). Ours is ``dopri5``, theirs ``tde-dopri5`` (torchdiffeq 0.2.5's
``odeint`` and ``odeint_adjoint``), both through :func:`solvers.gradients.odeint`.

``test_bench_training_iteration`` (one per gradient mode): one training iteration (forward
solve, loss, backward pass, optimiser step) of each library, timed round-robin in an order
rotated every round (:class:`harness.measure.timing.Interleaved`), so that this shared
machine's slow spells land on both alike. Both start every round from the same weights (the
task's initial field after :data:`PRETRAIN` iterations of our backprop training, so the field
is mid-training and takes the steps a training run takes, not the few of its untrained start)
and see the same minibatch. Printed (and in ``extra_info``): the ratio of the median times,
ours ÷ theirs; the same per function evaluation, forward plus backward; the NFE each takes.
Beside them, the floor: the field's own calls at our NFE and nothing else (``_floor``), which
no solver taking our steps can beat. The test asserts that both gradients agree with a tight
backprop gradient (a faster iteration cannot come from a worse gradient), never a time.

``test_bench_training_run`` (only with ``--benchmark-enable``: about a minute): both libraries
in all three modes train side by side from the task's initial weights over the same
:data:`RUN_ITERATIONS` minibatches, one iteration of each per round in a rotated order.
Printed: the median backward NFE of the adjoint and of the seminorm adjoint (the seminorm's
saving), and the time to the task's target loss (:func:`training.loop.summarise`'s
definition: the first iteration at which the mean of the last ``target_window`` losses is at
most ``target_loss``), ours ÷ theirs.

``test_bench_training_nfe_norm``: why our ``dopri5`` takes more steps than torchdiffeq's at the
same tolerances. The same solve with our norm and with theirs, in both libraries.

``python -m pytest tests/bench/test_bench_training.py --benchmark-enable -s``
"""

from __future__ import annotations

import time

import pytest
import torch

from harness.measure.nfe import CountingRHS
from harness.measure.timing import Interleaved
from harness.plugins import discover
from harness.registry import make_solver, make_task
from solvers.gradients import grad_rel_err, odeint
from solvers.gradients.vjp import vjp
from solvers.norms import RMSNorm
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5
from training.loop import minibatch_starts, seeds, summarise

F64 = torch.float64
RTOL, ATOL = 1e-7, 1e-9
MODES = ("backprop", "adjoint", "adjoint-seminorm")
SOLVERS = {"ours": "dopri5", "tde": "tde-dopri5"}
PRETRAIN = 30  # iterations of our backprop before the timed iteration (the loss is then ~0.05)
ROUNDS = 20
RUN_ITERATIONS = 100
_cache: dict[str, object] = {}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread for both libraries: the ops are tiny (a [20, 50] hidden layer), and
    on a shared 2-core machine an OpenMP team competing with other processes made one call of
    the field 10 to 40 times slower than on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Spiral:
    """The task's data, its initial field and its minibatch stream (the harness's seeds)."""

    def __init__(self) -> None:
        discover()
        self.task = make_task("spiral")
        t, ys = self.task.true_trajectory()
        self.t_all = torch.tensor(t, dtype=F64)
        self.y_all = torch.tensor(ys, dtype=F64)
        self.window = self.task.data.window
        self.batch = self.task.data.batch
        self.t = self.t_all[: self.window]
        weight_seed, self.batch_seed = seeds(self.task.seed, 0)
        torch.manual_seed(weight_seed)
        self.initial = self.task.make_field(F64).state_dict()

    def minibatches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``n`` minibatches ``(y0, target)`` of a training run."""
        gen = torch.Generator().manual_seed(self.batch_seed)
        offsets = torch.arange(self.window).unsqueeze(1)
        out = []
        n_points = len(self.t_all)
        for _ in range(n):
            starts = minibatch_starts(n_points, self.window, self.batch, gen)
            out.append((self.y_all[starts], self.y_all[starts.unsqueeze(0) + offsets]))
        return out

    def field(self, state: dict | None = None) -> torch.nn.Module:
        field = self.task.make_field(F64)
        field.load_state_dict(state or self.initial)
        return field


def spiral() -> Spiral:
    if "spiral" not in _cache:
        _cache["spiral"] = Spiral()
    return _cache["spiral"]  # type: ignore[return-value]


class Trainer:
    """One library in one gradient mode training a field: :meth:`iteration` is one optimiser
    step on a minibatch, with its loss, NFE and times kept in :attr:`records`."""

    def __init__(self, sp: Spiral, solver: str, mode: str, state: dict | None = None) -> None:
        self.sp, self.mode = sp, mode
        self.solver = make_solver(solver)
        self.field = sp.field(state)
        self.f = CountingRHS(self.field)
        self.params = tuple(self.field.parameters())
        self.optimiser = sp.task.make_optimiser(self.params)
        self.records: list[dict] = []

    def gradient(self, y0: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Forward solve, loss and backward pass (``.grad`` of the parameters filled)."""
        gs = odeint(self.solver, self.f, y0, self.sp.t, mode=self.mode, params=self.params,
                    rtol=RTOL, atol=ATOL)
        loss = self.sp.task.loss_of(gs.ys, target)
        loss.backward()
        return loss

    def iteration(self, y0: torch.Tensor, target: torch.Tensor) -> None:
        clock = time.perf_counter
        self.optimiser.zero_grad(set_to_none=True)
        self.f.reset()
        w0 = clock()
        gs = odeint(self.solver, self.f, y0, self.sp.t, mode=self.mode, params=self.params,
                    rtol=RTOL, atol=ATOL)
        loss = self.sp.task.loss_of(gs.ys, target)
        w1 = clock()
        nfe_forward = self.f.calls
        self.f.reset()
        loss.backward()
        w2 = clock()
        self.optimiser.step()
        w3 = clock()
        self.records.append(dict(
            loss=float(loss.detach()), nfe_forward=nfe_forward, nfe_backward=self.f.calls,
            time_forward_s=w1 - w0, time_backward_s=w2 - w1, time_step_s=w3 - w2,
        ))


def _pretrained() -> dict:
    """The field after :data:`PRETRAIN` iterations of our backprop, and the next minibatch."""
    if "pretrained" not in _cache:
        sp = spiral()
        batches = sp.minibatches(PRETRAIN + 1)
        trainer = Trainer(sp, "dopri5", "backprop")
        for y0, target in batches[:PRETRAIN]:
            trainer.iteration(y0, target)
        _cache["pretrained"] = (trainer.field.state_dict(), batches[PRETRAIN])
    return _cache["pretrained"]  # type: ignore[return-value]


def _reference_grads(state: dict, batch) -> tuple[torch.Tensor, ...]:
    """A tight backprop gradient (ours, rtol = atol = 1e-11) of the timed iteration's loss."""
    if "reference" not in _cache:
        sp = spiral()
        field = sp.field(state)
        params = tuple(field.parameters())
        gs = odeint(make_solver("dopri5"), field, batch[0], sp.t, mode="backprop",
                    params=params, rtol=1e-11, atol=1e-11)
        _cache["reference"] = torch.autograd.grad(sp.task.loss_of(gs.ys, batch[1]), params)
    return _cache["reference"]  # type: ignore[return-value]


def _floor(sp: Spiral, state: dict, mode: str, y0: torch.Tensor, nfe: tuple[int, int]):
    """The field's own work at our NFE and nothing else, a lower bound for any solver that
    takes our steps: backprop, ``nfe[0]`` recorded calls of ``f`` (chained by one ``add``
    each) and one backward pass; the adjoint, ``nfe[0]`` calls without a graph and ``nfe[1]``
    calls each with its vector-Jacobian product (the adjoint's own :func:`vjp`)."""
    field = sp.field(state)
    params = tuple(field.parameters())
    if mode == "backprop":
        def run() -> None:
            y = y0
            for _ in range(nfe[0]):
                y = y + 1e-3 * field(0.0, y)
            y.abs().mean().backward()
        return run
    v = torch.ones_like(y0)

    def run_adjoint() -> None:
        with torch.no_grad():
            for _ in range(nfe[0]):
                field(0.0, y0)
        for _ in range(nfe[1]):
            yv = y0.detach().requires_grad_(True)
            with torch.enable_grad():
                vjp(field(0.0, yv), (yv, *params), v)
    return run_adjoint


def _say(benchmark, capsys, lines: list[str]) -> None:
    """Print ``lines`` past pytest's capture, when benchmarks run (``--benchmark-enable``)."""
    if benchmark.disabled:
        return
    with capsys.disabled():
        print()
        for line in lines:
            print(line)


@pytest.mark.parametrize("mode", MODES)
def test_bench_training_iteration(benchmark, capsys, mode: str) -> None:
    pytest.importorskip("torchdiffeq")
    sp = spiral()
    state, (y0, target) = _pretrained()
    reference = _reference_grads(state, (y0, target))
    trainers = {name: Trainer(sp, solver, mode, state) for name, solver in SOLVERS.items()}
    snapshot = {k: v.clone() for k, v in state.items()}
    diffs = {}
    for name, tr in trainers.items():
        tr.f.reset()
        tr.gradient(y0, target)
        diffs[name] = grad_rel_err([p.grad for p in tr.params], reference)
        assert diffs[name] < 1e-4, f"{name} {mode}: gradient off by {diffs[name]:.1e}"

    def setup(tr: Trainer):
        def restore() -> tuple:
            tr.field.load_state_dict(snapshot)  # the same weights every round
            return ()
        return restore

    nfe: dict[str, tuple[int, int]] = {}
    for name, tr in trainers.items():  # one untimed iteration: the NFE of every round
        tr.field.load_state_dict(snapshot)
        tr.iteration(y0, target)
        nfe[name] = (tr.records[-1]["nfe_forward"], tr.records[-1]["nfe_backward"])
    runners = {name: (lambda tr=tr: tr.iteration(y0, target)) for name, tr in trainers.items()}
    runners["floor"] = _floor(sp, state, mode, y0, nfe["ours"])
    timer = Interleaved(
        runners, setups={name: setup(tr) for name, tr in trainers.items()}, warmup=2
    )
    benchmark.pedantic(timer.round, rounds=ROUNDS + timer.warmup)
    med = timer.medians()
    per_nfe = {name: med[name] / sum(nfe[name]) for name in trainers}
    ratio = med["ours"] / med["tde"]
    ratio_nfe = per_nfe["ours"] / per_nfe["tde"]
    floor = med["floor"] / med["tde"]
    benchmark.extra_info.update(
        mode=mode, rtol=RTOL, atol=ATOL, pretrain=PRETRAIN,
        iteration_ms={k: round(v * 1e3, 2) for k, v in med.items()},
        nfe_forward={k: v[0] for k, v in nfe.items()},
        nfe_backward={k: v[1] for k, v in nfe.items()},
        us_per_nfe={k: round(v * 1e6, 1) for k, v in per_nfe.items()},
        grad_rel_diff=diffs, ratio=round(ratio, 3), ratio_per_nfe=round(ratio_nfe, 3),
        floor_ratio=round(floor, 3),
    )
    _say(benchmark, capsys, [
        f"training iteration, spiral, {mode}, rtol {RTOL:g} atol {ATOL:g} "
        f"(median of {len(timer.times['ours'])} interleaved rounds):",
        "  " + "  ".join(f"{k} {med[k] * 1e3:.2f} ms (NFE {nfe[k][0]} fwd + {nfe[k][1]} bwd, "
                         f"{per_nfe[k] * 1e6:.1f} us/NFE, grad diff {diffs[k]:.1e})"
                         for k in trainers),
        f"  ours/tde {ratio:.3f}  per NFE {ratio_nfe:.3f}  "
        f"(the field alone at our NFE: {med['floor'] * 1e3:.2f} ms, {floor:.3f} of tde)",
    ])


def test_bench_training_nfe_norm(benchmark, capsys) -> None:
    """Forward NFE of one solve on the pretrained field, each library with each norm: ours
    (worst trajectory's RMS, Hairer's controller) and an RMS over the whole batch (theirs;
    ours through ``norm=RMSNorm(n)``, one row of all elements); and ours with
    the plain I controller (``beta = 0``) beside Hairer's stabilised one."""
    tde = pytest.importorskip("torchdiffeq")
    sp = spiral()
    state, (y0, _) = _pretrained()
    f = CountingRHS(sp.field(state))
    n = y0.numel()
    d = y0.shape[-1]

    def worst_rms(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, d).pow(2).mean(-1).sqrt().max()

    ours, ours_i = make_solver("dopri5"), RungeKutta(DOPRI5, name="dopri5-beta0", beta=0.0)
    solves = {
        "ours": lambda: ours.solve(f, y0, sp.t, rtol=RTOL, atol=ATOL),
        "ours, batch RMS": lambda: ours.solve(f, y0, sp.t, rtol=RTOL, atol=ATOL,
                                              norm=RMSNorm(n)),
        "ours, beta 0": lambda: ours_i.solve(f, y0, sp.t, rtol=RTOL, atol=ATOL),
        "ours, batch RMS, beta 0": lambda: ours_i.solve(f, y0, sp.t, rtol=RTOL, atol=ATOL,
                                                        norm=RMSNorm(n)),
        "tde": lambda: tde.odeint(f, y0, sp.t, rtol=RTOL, atol=ATOL, method="dopri5"),
        "tde, worst trajectory": lambda: tde.odeint(f, y0, sp.t, rtol=RTOL, atol=ATOL,
                                                    method="dopri5",
                                                    options=dict(norm=worst_rms)),
    }
    counts = {}
    with torch.no_grad():
        for name, solve in solves.items():
            f.reset()
            solve()
            counts[name] = f.calls
    benchmark.pedantic(solves["ours"], rounds=1)
    benchmark.extra_info.update(nfe=counts)
    _say(benchmark, capsys, ["forward NFE of one window batch (pretrained field): "
                  + ", ".join(f"{k} {v}" for k, v in counts.items())])


@pytest.fixture
def _heavy_only_when_benchmarking(request):
    if not request.config.getoption("benchmark_enable"):
        pytest.skip("a training run of every mode: run with --benchmark-enable")


@pytest.mark.usefixtures("_heavy_only_when_benchmarking")
def test_bench_training_run(benchmark, capsys) -> None:
    pytest.importorskip("torchdiffeq")
    sp = spiral()
    batches = sp.minibatches(RUN_ITERATIONS)
    trainers = {f"{lib} {mode}": Trainer(sp, solver, mode)
                for mode in MODES for lib, solver in SOLVERS.items()}
    step = {name: 0 for name in trainers}

    def one(name: str) -> None:
        trainers[name].iteration(*batches[step[name]])
        step[name] += 1

    timer = Interleaved({name: (lambda name=name: one(name)) for name in trainers})
    benchmark.pedantic(timer.round, rounds=RUN_ITERATIONS)
    task = sp.task
    rows = {name: summarise(tr.records, task, RUN_ITERATIONS) for name, tr in trainers.items()}
    lines = [f"training run, spiral, {RUN_ITERATIONS} iterations interleaved, rtol {RTOL:g} "
             f"atol {ATOL:g}, target: mean of the last {task.target_window} losses "
             f"<= {task.target_loss:g}"]
    for name, r in rows.items():
        lines.append(
            f"  {name:<22} NFE/iteration (median) {r['nfe_iter_median']:.0f} fwd "
            f"{r['nfe_backward_iter_median']:.0f} bwd; iteration "
            f"{r['time_iter_median_s'] * 1e3:.1f} ms; target at iteration "
            f"{r['iteration_to_target']}, "
            f"{r['time_to_target_s']:.2f} s; final loss {r['loss_final']:.4f}")
    for lib in SOLVERS:
        adj = rows[f"{lib} adjoint"]["nfe_backward_iter_median"]
        semi = rows[f"{lib} adjoint-seminorm"]["nfe_backward_iter_median"]
        lines.append(f"  {lib}: the seminorm saves {1 - semi / adj:.1%} of the backward NFE "
                     f"(median per iteration {semi:.0f} against the adjoint's {adj:.0f})")
    for mode in MODES:
        ours, theirs = rows[f"ours {mode}"], rows[f"tde {mode}"]
        lines.append(f"  {mode}: time to target ours/tde "
                     f"{ours['time_to_target_s'] / theirs['time_to_target_s']:.3f}; "
                     f"iteration ours/tde "
                     f"{ours['time_iter_median_s'] / theirs['time_iter_median_s']:.3f}")
    benchmark.extra_info.update(runs={name: {k: r[k] for k in (
        "nfe_iter_median", "nfe_backward_iter_median", "time_iter_median_s",
        "iteration_to_target", "time_to_target_s", "loss_final")} for name, r in rows.items()})
    _say(benchmark, capsys, lines)
