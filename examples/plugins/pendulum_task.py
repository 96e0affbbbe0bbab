"""A training-task plugin: a damped pendulum fitted by a small MLP field.

    python -m harness run --plugin examples/plugins/pendulum_task.py --suite train \
        --tasks pendulum --solvers dopri5 --grad adjoint --iterations 50

A task is data: the true system (a numpy right-hand side, from which the harness computes the
observations once), how minibatches are drawn, the model, the optimiser and how long to train.
"""

import numpy as np

from harness.registry import register_task
from training.tasks import Data, Model, Optimiser, System, Task


def damped_pendulum(t, y):
    """theta'' = -sin(theta) - 0.2 theta' as a first-order system (theta, omega)."""
    return np.array([y[1], -np.sin(y[0]) - 0.2 * y[1]])


PENDULUM = Task(
    name="pendulum",
    system=System(damped_pendulum, y0=(2.5, 0.0), t_end=20.0, n_points=500,
                  description="theta'' = -sin(theta) - 0.2 theta', from (2.5, 0)"),
    data=Data(window=10, batch=16),
    model=Model(width=32, hidden=1, activation="tanh"),
    optimiser=Optimiser("adam", lr=5e-3),
    iterations=200,
    quick_iterations=5,
    target_loss=0.05,
    description="a damped pendulum fitted by Linear(2, 32)-tanh-Linear(32, 2)",
)

register_task("pendulum")(lambda: PENDULUM)
