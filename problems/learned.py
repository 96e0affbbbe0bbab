"""Learned-dynamics problems: a small neural vector field with fixed weights.

A neural ODE's right-hand side is a network; these problems stand in for a trained one so a
solver's accuracy, NFE and gradient cost can be measured on the kind of ``f`` it meets in
training (Chen, Rubanova, Bettencourt & Duvenaud, Neural Ordinary Differential Equations,
NeurIPS 2018). The weights come from numpy's seeded ``default_rng`` (PCG64), not torch's
generator, so they do not depend on the torch version; the stored reference records a checksum
of the weights it was computed with, and building refuses a mismatch (a numpy that draws a
different stream would otherwise silently score solvers against another problem's reference).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness.registry import register_problem
from problems import references
from problems.base import Problem, Reference, RefKind

MLP_SEED = 4
MLP_WIDTH = 32
MLP_GAIN = 1.5  # hidden-layer weight scale over 1/sqrt(fan_in)
MLP_OUT_GAIN = 2.0  # output-layer weight scale over 1/sqrt(fan_in)
MLP_Y0 = (1.0, -0.5)
MLP_T = np.linspace(0.0, 5.0, 11)


def mlp_weights(seed: int = MLP_SEED) -> dict[str, np.ndarray]:
    """Float64 weights of the 3-32-32-2 tanh MLP (input ``(y1, y2, t)``), drawn in a fixed order.

    Hidden weights ~ N(0, (1.5^2)/fan_in), hidden biases ~ N(0, 0.25), output weights ~
    N(0, 4/fan_in), output bias 0. Seed and scales were chosen (a scan over seeds 0-7) so that
    on [0, 5] from y0 = (1, -0.5) the trajectory turns through about 4 rad and stays within a
    box of size ~3, while the Jacobian's spectral radius stays O(1): curved but non-stiff.
    """
    rng = np.random.default_rng(seed)
    w = MLP_WIDTH
    return {
        "w1": rng.standard_normal((w, 3)) * MLP_GAIN / np.sqrt(3.0),
        "b1": rng.standard_normal(w) * 0.5,
        "w2": rng.standard_normal((w, w)) * MLP_GAIN / np.sqrt(w),
        "b2": rng.standard_normal(w) * 0.5,
        "w3": rng.standard_normal((2, w)) * MLP_OUT_GAIN / np.sqrt(w),
        "b3": np.zeros(2),
    }


def mlp_weights_sha256(weights: dict[str, np.ndarray]) -> str:
    return references.array_sha256(*(weights[k] for k in ("w1", "b1", "w2", "b2", "w3", "b3")))


def mlp_numpy_rhs(weights: dict[str, np.ndarray]):
    """The same vector field in numpy float64, for the scipy reference solve."""
    w1, b1, w2, b2, w3, b3 = (weights[k] for k in ("w1", "b1", "w2", "b2", "w3", "b3"))

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        z = np.concatenate([y, [t]])
        return w3 @ np.tanh(w2 @ np.tanh(w1 @ z + b1) + b2) + b3

    return rhs


class MLPField(nn.Module):
    """``f(t, y) = W3 tanh(W2 tanh(W1 [y, t] + b1) + b2) + b3``: time enters as an input.

    ``t`` may be a Python float or a 0-dim tensor; it is broadcast over the leading dims of y.
    """

    def __init__(self, weights: dict[str, np.ndarray], dtype: torch.dtype, device) -> None:
        super().__init__()
        dim = weights["w3"].shape[0]
        width = weights["w1"].shape[0]
        # Made in float64 so the float64 weights are copied without rounding, then cast.
        f64 = torch.float64
        self.l1 = nn.Linear(dim + 1, width, dtype=f64)
        self.l2 = nn.Linear(width, width, dtype=f64)
        self.l3 = nn.Linear(width, dim, dtype=f64)
        with torch.no_grad():
            for layer, wk, bk in (
                (self.l1, "w1", "b1"),
                (self.l2, "w2", "b2"),
                (self.l3, "w3", "b3"),
            ):
                layer.weight.copy_(torch.from_numpy(weights[wk]))
                layer.bias.copy_(torch.from_numpy(weights[bk]))
        self.to(dtype=dtype, device=device)

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (*y.shape[:-1], 1)
        if isinstance(t, torch.Tensor):
            tt = t.to(dtype=y.dtype, device=y.device).expand(shape)
        else:
            tt = y.new_full(shape, float(t))
        h = torch.tanh(self.l1(torch.cat((y, tt), dim=-1)))
        h = torch.tanh(self.l2(h))
        return self.l3(h)


def _computed_specs() -> list[references.ComputedSpec]:
    weights = mlp_weights()
    return [
        references.ComputedSpec(
            name="mlp",
            rhs=mlp_numpy_rhs(weights),
            y0=MLP_Y0,
            t=MLP_T.tolist(),
            method="DOP853",
            rtol=1e-13,
            atol=1e-14,
            check_method="Radau",
            note="3-32-32-2 tanh MLP field, weights numpy default_rng(4), y0 = (1, -0.5)",
            extra_meta={"weights_sha256": mlp_weights_sha256(weights), "seed": MLP_SEED},
        )
    ]


COMPUTED = _computed_specs()


@register_problem("mlp")
def build_mlp(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    weights = mlp_weights()
    stored = references.load("mlp")
    references.check_times(stored, MLP_T)
    if stored.meta.get("weights_sha256") != mlp_weights_sha256(weights):
        raise references.ReferenceDataError(
            f"{stored.path} was computed for other MLP weights than numpy "
            f"{np.__version__} draws from seed {MLP_SEED}; regenerate it with "
            f"`{references.MAKE_COMMAND}`"
        )
    return Problem(
        name="mlp",
        tags=frozenset({"learned", "small"}),
        f=MLPField(weights, dtype, device),
        y0=torch.tensor(MLP_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(MLP_T, dtype=dtype, device=device),
        reference=Reference(ys=stored.ys, kind=RefKind.COMPUTED, provenance=stored.provenance),
        atol=1e-6,
        rtol=1e-6,
        description="A fixed random 3-32-32-2 tanh MLP as the vector field of a 2-dim "
        "non-autonomous ODE on [0, 5]: the shape of f a neural ODE meets, with parameters.",
        citation="Chen, Rubanova, Bettencourt, Duvenaud, Neural Ordinary Differential "
        "Equations, NeurIPS 2018 (the setting); weights: numpy default_rng(4)",
        extra={
            "seed": MLP_SEED,
            "width": MLP_WIDTH,
            "n_params": sum(int(v.size) for v in weights.values()),
            "reference_cross_check": stored.meta.get("cross_check"),
        },
    )
