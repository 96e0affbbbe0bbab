"""Train the learned-field problems' networks and write them to ``problems/data/weights/``.

    python -m training.make_fields            # all (today: spiral-learned)
    python -m training.make_fields --check    # retrain and compare with the files, write nothing

A :class:`FieldSpec` names a training task and how it is trained (solver, gradient mode,
tolerances, batch, iterations, seed). The training is the harness's own ``train`` case of that
setting, step for step (:mod:`training.loop`: the same seeds, initial weights, minibatches,
``odeint`` and optimiser; ``tests/test_problem_learned.py`` pins that the losses agree bit for
bit), kept here as a few lines because the loop does not hand its field back. The file holds
the float64 weights (JSON floats read back bit for bit), the task, the training settings, the
torch version, the command, the date, the final training loss, the validation error and a
sha256 checksum of the values, which the problem verifies when it loads them.

Reproducibility: on one machine and torch build the same spec trains the same weights, bit for
bit. Another BLAS, CPU or torch version rounds the matrix products differently, and over
hundreds of optimiser steps those last-bit differences grow, so a retrain elsewhere gives a
nearby field, not the same bits. ``--check`` therefore reports how many digits a retrain
shares with the file (and the two validation errors), exits 0 only for an identical retrain,
and never writes; the shipped file, not a retrain, defines the problem. After changing the
weights, regenerate the reference: ``python -m problems.make_references spiral_learned``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from problems import learned, references
from solvers.base import Status

COMMAND = "python -m training.make_fields"
LOSS_TAIL = 10  # the file records the mean loss of the last LOSS_TAIL iterations too


@dataclass(frozen=True)
class FieldSpec:
    """How one learned problem's field is trained: a task of :mod:`training.tasks` fitted as
    the harness's ``train`` case with these settings would fit it (float64, CPU)."""

    name: str  # the problem (and weights file) name
    task: str
    # the defaults are ode_demo's: dopri5 at torchdiffeq's default tolerances, backprop through
    # the solver (its --adjoint flag is off by default), batches of 20 windows, 2000 iterations
    solver: str = "dopri5"
    grad_mode: str = "backprop"
    rtol: float = 1e-7
    atol: float = 1e-9
    batch: int = 20
    iterations: int = 2000
    run_seed: int = 0  # the harness's --seed; the weight and minibatch seeds follow the task's


# See learned.SPIRAL_LEARNED's comment for why backprop and how long it takes.
SPIRAL = FieldSpec(name=learned.SPIRAL_LEARNED.name, task="spiral",
                   iterations=learned.SPIRAL_LEARNED.iterations)
SPECS = (SPIRAL,)


class TrainingFailed(RuntimeError):
    """A solve, the loss or a gradient failed while training a field."""


@dataclass
class Trained:
    """A trained field and what its training reached."""

    field: torch.nn.Module
    losses: list[float]
    val_err: float  # mean |y - y_true| over every observation, the case's solver from y0
    seconds: float
    seeds: tuple[int, int]  # (initial weights, minibatches), from training.loop.seeds


def train_seeds(spec: FieldSpec) -> tuple[int, int]:
    """(initial weights, minibatches) seeds of ``spec``: the harness's for its task and seed."""
    from harness import plugins, registry
    from training.loop import seeds

    plugins.discover()
    return seeds(registry.make_task(spec.task).seed, spec.run_seed)


def train(spec: FieldSpec, progress: bool = False) -> Trained:
    """Train ``spec``'s field, as :func:`training.loop._train` trains its case."""
    from harness import plugins, registry
    from solvers.gradients import check_mode, odeint
    from training.loop import minibatch_starts

    plugins.discover()  # solvers, problems and tasks
    task = registry.make_task(spec.task)
    solver = registry.make_solver(spec.solver)
    mode = check_mode(solver, spec.grad_mode)
    dtype = torch.float64
    t_np, ys_np = task.true_trajectory()
    t_all = torch.as_tensor(t_np, dtype=dtype)
    y_all = torch.as_tensor(np.array(ys_np), dtype=dtype)
    n_points, window = len(t_np), task.data.window
    weight_seed, batch_seed = train_seeds(spec)
    torch.manual_seed(weight_seed)
    field = task.make_field(dtype, "cpu")
    gen = torch.Generator().manual_seed(batch_seed)
    optimiser = task.make_optimiser(field.parameters())
    params = tuple(p for p in field.parameters() if p.requires_grad)
    t_win = t_all[:window]
    offsets = torch.arange(window).unsqueeze(1)
    if solver.adaptive:
        kwargs: dict[str, Any] = dict(rtol=spec.rtol, atol=spec.atol)
    else:
        raise ValueError(f"{spec.name}: train with an adaptive solver, not {spec.solver!r}")
    losses: list[float] = []
    start = time.perf_counter()
    for it in range(spec.iterations):
        starts = minibatch_starts(n_points, window, spec.batch, gen)
        target = y_all[starts.unsqueeze(0) + offsets]
        optimiser.zero_grad(set_to_none=True)
        gs = odeint(solver, field, y_all[starts], t_win, mode=mode, params=params, **kwargs)
        loss = task.loss_of(gs.ys, target)
        value = float(loss.detach())
        if Status(gs.solution.status) is not Status.OK or not math.isfinite(value):
            raise TrainingFailed(f"{spec.name}: iteration {it}: forward solve "
                                 f"{gs.solution.status} {gs.solution.message}, loss {value}")
        loss.backward()
        if Status(gs.backward.status) is not Status.OK or not all(
                bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None):
            raise TrainingFailed(f"{spec.name}: iteration {it}: backward pass "
                                 f"{gs.backward.status} {gs.backward.message}")
        optimiser.step()
        losses.append(value)
        if progress and (it + 1) % 25 == 0:
            print(f"  iteration {it + 1}/{spec.iterations}: loss {value:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        sol = solver.solve(field, y_all[0], t_all, **kwargs)
        if Status(sol.status) is not Status.OK:
            raise TrainingFailed(f"{spec.name}: validation solve {sol.status} {sol.message}")
        val_err = float(torch.mean(torch.abs(sol.ys - y_all)))
    return Trained(field=field, losses=losses, val_err=val_err, seconds=seconds,
                   seeds=(weight_seed, batch_seed))


def weights_of(field: torch.nn.Module) -> dict[str, np.ndarray]:
    """The trained ``Linear-tanh-Linear`` field's tensors under :data:`learned.CUBE_KEYS`."""
    layers = [m for m in field.modules() if isinstance(m, torch.nn.Linear)]
    if len(layers) != 2 or not getattr(field, "cube", False):
        raise ValueError("expected the spiral's Linear-tanh-Linear field on y**3")
    out = {}
    for i, layer in enumerate(layers, start=1):
        out[f"w{i}"] = layer.weight.detach().to(torch.float64).numpy().copy()
        out[f"b{i}"] = layer.bias.detach().to(torch.float64).numpy().copy()
    return out


def record_for(spec: FieldSpec, trained: Trained) -> dict[str, Any]:
    weights = weights_of(trained.field)
    window = LOSS_TAIL
    tail = trained.losses[-window:]
    return {
        "format": 1,
        "name": spec.name,
        "trainer": {
            **asdict(spec),
            "weight_seed": trained.seeds[0],
            "minibatch_seed": trained.seeds[1],
            "dtype": "float64",
            "device": "cpu",
            "torch": torch.__version__,
            "numpy": np.__version__,
            "seconds": round(trained.seconds, 1),
            "loss_first": trained.losses[0],
            "loss_final": trained.losses[-1],
            f"loss_final_mean_{window}": sum(tail) / len(tail),
            "val_err": trained.val_err,
            "val_err_note": "mean |y - y_true| over the task's observations, solved from y0 "
            "with the training solver and tolerances",
            "reproducible": "bit for bit on the same machine and torch build only",
        },
        "created": datetime.date.today().isoformat(),
        "command": COMMAND,
        **{k: weights[k].tolist() for k in learned.CUBE_KEYS},
        "sha256": learned.cube_weights_sha256(weights),
    }


def shared_digits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """``-log10`` of the largest difference relative to the largest weight (inf if equal)."""
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in learned.CUBE_KEYS)
    scale = max(float(np.max(np.abs(a[k]))) for k in learned.CUBE_KEYS)
    return math.inf if diff == 0.0 else -math.log10(diff / scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="fields to train (default: all)")
    parser.add_argument("--check", action="store_true",
                        help="retrain and compare with the files; write nothing")
    args = parser.parse_args(argv)
    known = {s.name: s for s in SPECS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"unknown field(s) {unknown}; valid: {', '.join(known)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # small matrices: one thread is fastest and rounds the same
    status = 0
    for spec in [known[n] for n in args.names] if args.names else SPECS:
        print(f"{spec.name}: training task {spec.task} for {spec.iterations} iterations "
              f"({spec.solver} {spec.grad_mode} rtol={spec.rtol:g} atol={spec.atol:g})",
              file=sys.stderr)
        trained = train(spec, progress=True)
        record = record_for(spec, trained)
        summary = (f"loss {record['trainer']['loss_final']:.4f}, val_err {trained.val_err:.4f}, "
                   f"{trained.seconds:.0f} s")
        path = learned.weights_path(spec.name)
        if args.check:
            stored = learned.load_cube_weights(spec.name)
            stored_val = json.loads(path.read_text())["trainer"]["val_err"]
            digits = shared_digits(stored, weights_of(trained.field))
            same = math.isinf(digits)
            print(f"{spec.name}: {path} {'matches' if same else 'differs from'} a retrain "
                  f"({'every bit' if same else f'{digits:.1f} digits shared'}; val_err "
                  f"{trained.val_err:.6g} retrained, {stored_val:.6g} stored; {summary})")
            status |= 0 if same else 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{spec.name}: wrote {path} sha256 {record['sha256'][:12]} ({summary}); now "
              f"run `{references.MAKE_COMMAND} {spec.name.replace('-', '_')}`")
    return status


if __name__ == "__main__":
    raise SystemExit(main())

