"""Every registered built-in problem honours the Problem contract (problems/base.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import problems.builtin  # noqa: F401  (registers the built-in problems)
from harness.registry import PROBLEMS
from problems.base import Problem, RefKind

BUILTIN = [e.name for e in PROBLEMS.entries() if e.source.startswith("built-in (problems.")]
FAMILY_TAGS = {"nonstiff", "stiff", "learned"}
SIZE_TAGS = {"small", "medium", "large"}


def _build(name: str, dtype: torch.dtype = torch.float64) -> Problem:
    return PROBLEMS.get(name).factory(dtype, "cpu")


def test_the_foundation_problems_are_registered():
    expected = {
        "linear",
        "arenstorf",
        "kepler",
        "lotka-volterra",
        "robertson",
        "vdpol-mu1000",
        "mlp",
    }
    assert expected <= set(BUILTIN)


def test_the_problem_library_is_registered():
    expected = {
        "arenstorf-2", "pleiades", "lorenz",
        "kepler-d1", "kepler-d2", "kepler-d3", "kepler-d4", "kepler-d5",
        "detest-a1", "detest-a2", "detest-a3", "detest-a4", "detest-b2", "detest-b4", "detest-b5",
        "vdpol", "orego", "hires", "e5", "pollu",
        "mlp-hard",
    }  # fmt: skip
    assert expected <= set(BUILTIN)
    assert {n for n in BUILTIN if "chaotic" in _build(n).tags} == {"lorenz"}


def _checks():
    from problems.builtin import FAMILIES

    return {c.problem: c for fam in FAMILIES for c in getattr(fam, "CHECKS", [])}


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_problem_declares_how_its_reference_is_checked(name):
    check = _checks().get(name)
    assert check is not None, f"{name} has no RefCheck in its family's CHECKS"
    assert check.digits > 0 and check.note


@pytest.mark.parametrize("name", BUILTIN)
def test_size_tag_follows_the_dimension(name):
    p = _build(name)
    want = "small" if p.dim <= 10 else "medium" if p.dim <= 100 else "large"
    assert want in p.tags


@pytest.mark.parametrize("name", BUILTIN)
def test_the_numpy_rhs_of_the_check_is_the_torch_f(name):
    """The independent solves of refs --check use the numpy form: it must be the same f."""
    p, check = _build(name), _checks()[name]
    gen = np.random.default_rng(2)
    y0 = p.y0.numpy()
    for k in range(3):
        y = y0 + 0.05 * np.maximum(np.abs(y0), 0.1) * gen.standard_normal(y0.shape)
        y = np.abs(y) if "stiff" in p.tags else y  # concentrations stay non-negative
        t = float(p.t[-1]) * (k + 1) / 7
        want = p.f(torch.tensor(t, dtype=torch.float64), torch.from_numpy(y)).detach().numpy()
        want = want.reshape(-1)  # the check solves the flattened state (a batched y0 too)
        np.testing.assert_allclose(check.rhs(t, y.reshape(-1)), want, rtol=1e-12,
                                   atol=1e-12 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("name", [n for n in BUILTIN if n in _checks() and _checks()[n].jac])
def test_the_check_jacobian_matches_finite_differences(name):
    p, check = _build(name), _checks()[name]
    y = np.abs(p.y0.numpy()) + 0.1
    t = float(p.t[1])
    h = 1e-7 * np.maximum(np.abs(y), 1e-3)
    fd = np.stack([(check.rhs(t, y + hi * e) - check.rhs(t, y - hi * e)) / (2 * hi)
                   for hi, e in zip(h, np.eye(p.dim), strict=True)], axis=1)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(check.jac(t, y), fd, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("name", BUILTIN)
def test_problem_metadata_is_complete(name):
    p = _build(name)
    assert p.name == name
    assert len(p.tags & FAMILY_TAGS) == 1, p.tags
    assert len(p.tags & SIZE_TAGS) == 1, p.tags
    assert ("exact" in p.tags) == (p.reference.kind is RefKind.EXACT)
    prov = p.reference.provenance
    assert prov.strip() and "\n" not in prov
    assert prov.startswith(str(p.reference.kind))
    assert p.description and p.citation
    assert p.atol > 0 and p.rtol > 0
    assert isinstance(p.f, nn.Module)
    if "stiff" in p.tags:
        assert p.max_steps is not None and p.max_steps > 0


@pytest.mark.parametrize("name", BUILTIN)
def test_reference_has_one_row_per_output_time(name):
    p = _build(name)
    ys = p.reference.ys
    assert isinstance(ys, np.ndarray) and ys.dtype == np.float64
    assert ys.shape == (len(p.t), *p.y0.shape)
    assert p.t.ndim == 1 and bool(torch.all(p.t[1:] > p.t[:-1]))
    np.testing.assert_array_equal(ys[0], p.y0.numpy())
    assert np.isfinite(ys[-1]).all(), "the end point is always referenced"


@pytest.mark.parametrize("name", BUILTIN)
def test_f_is_batched_over_leading_dims(name):
    p = _build(name)
    gen = np.random.default_rng(0)
    scale = np.maximum(np.abs(p.y0.numpy()), 0.1)
    shape = tuple(p.y0.shape)
    rows = torch.from_numpy(p.y0.numpy() + 0.05 * scale * gen.standard_normal((3, *shape)))
    t = p.t[1] * 0.5
    batched = p.f(t, rows)
    assert batched.shape == rows.shape
    for i in range(3):
        torch.testing.assert_close(batched[i], p.f(t, rows[i]), rtol=1e-14, atol=0.0)
    deeper = p.f(t, rows.reshape(3, 1, *shape).expand(3, 2, *shape))
    torch.testing.assert_close(deeper[:, 1], batched, rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("name", BUILTIN)
def test_f_accepts_a_float_or_a_0dim_tensor_time(name):
    p = _build(name)
    t = float(p.t[1]) * 0.5
    torch.testing.assert_close(p.f(t, p.y0), p.f(torch.tensor(t, dtype=p.y0.dtype), p.y0))


@pytest.mark.parametrize("name", BUILTIN)
def test_float32_build_works(name):
    p64, p32 = _build(name), _build(name, torch.float32)
    assert p32.y0.dtype == torch.float32 and p32.t.dtype == torch.float32
    out = p32.f(p32.t[0], p32.y0)
    assert out.dtype == torch.float32
    # floating buffers follow the dtype; index and mask buffers (int, bool) keep theirs
    assert all(b.dtype == torch.float32 for b in p32.f.buffers() if b.is_floating_point())
    assert all(q.dtype == torch.float32 for q in p32.f.parameters())
    torch.testing.assert_close(out.double(), p64.f(p64.t[0], p64.y0), rtol=1e-5, atol=1e-5)
    assert p32.reference.ys.dtype == np.float64  # the reference stays float64


@pytest.mark.parametrize("name", BUILTIN)
def test_a_declared_fixed_step_ladder_is_increasing_positive_step_counts(name):
    ladders = _build(name).steps
    if ladders is None:
        return
    assert ladders and all(isinstance(order, int) and order >= 1 for order in ladders)
    for ladder in ladders.values():
        assert all(isinstance(n, int) and n > 0 for n in ladder)
        assert list(ladder) == sorted(set(ladder)) and len(ladder) >= 3
