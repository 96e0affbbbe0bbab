"""Test set problems (Bari IVP test set): right-hand sides against the source's definitions.

Each ``feval`` below is a line-by-line transcription of the test set's Fortran (``orego.f``,
``hires.f``, ``e5.f``, ``pollu.f``, ``plei.f``), independent of how ``problems`` writes it (POLLU
there is a stoichiometry matrix times rates); the torch fields and the numpy right-hand sides
used for the reference checks must both agree with it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from problems import kinetics, pleiades


def _torch(field, y, t=0.0):
    return field(t, torch.tensor(y, dtype=torch.float64)).numpy()


def orego_feval(y):
    return [77.27 * (y[1] + y[0] * (1.0 - 8.375e-6 * y[0] - y[1])),
            (y[2] - (1.0 + y[0]) * y[1]) / 77.27,
            0.161 * (y[0] - y[2])]


def hires_feval(y):
    f = [0.0] * 8
    f[0] = -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007
    f[1] = 1.71 * y[0] - 8.75 * y[1]
    f[2] = -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4]
    f[3] = 8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3]
    f[4] = -1.745 * y[4] + 0.43 * (y[5] + y[6])
    f[5] = -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6]
    f[6] = 280.0 * y[5] * y[7] - 1.81 * y[6]
    f[7] = -f[6]
    return f


def e5_feval(y):
    prod1 = 7.89e-10 * y[0]
    prod2 = 1.1e7 * y[0] * y[2]
    prod3 = 1.13e9 * y[1] * y[2]
    prod4 = 1.13e3 * y[3]
    f1, f2, f4 = -prod1 - prod2, prod1 - prod3, prod2 - prod4
    return [f1, f2, f2 - f4, f4]


def pollu_feval(y):
    k = [0.35, 26.6, 1.23e4, 8.6e-4, 8.2e-4, 1.5e4, 1.3e-4, 2.4e4, 1.65e4, 9.0e3, 0.022, 1.2e4,
         1.88, 1.63e4, 4.8e6, 3.5e-4, 0.0175, 1.0e8, 4.44e11, 1240.0, 2.1, 5.78, 0.0474, 1780.0,
         3.12]
    Y = [None] + list(y)  # 1-based, as in the Fortran  # noqa: N806
    r = [None] * 26
    r[1] = k[0] * Y[1]
    r[2] = k[1] * Y[2] * Y[4]
    r[3] = k[2] * Y[5] * Y[2]
    r[4] = k[3] * Y[7]
    r[5] = k[4] * Y[7]
    r[6] = k[5] * Y[7] * Y[6]
    r[7] = k[6] * Y[9]
    r[8] = k[7] * Y[9] * Y[6]
    r[9] = k[8] * Y[11] * Y[2]
    r[10] = k[9] * Y[11] * Y[1]
    r[11] = k[10] * Y[13]
    r[12] = k[11] * Y[10] * Y[2]
    r[13] = k[12] * Y[14]
    r[14] = k[13] * Y[1] * Y[6]
    r[15] = k[14] * Y[3]
    r[16] = k[15] * Y[4]
    r[17] = k[16] * Y[4]
    r[18] = k[17] * Y[16]
    r[19] = k[18] * Y[16]
    r[20] = k[19] * Y[17] * Y[6]
    r[21] = k[20] * Y[19]
    r[22] = k[21] * Y[19]
    r[23] = k[22] * Y[1] * Y[4]
    r[24] = k[23] * Y[19] * Y[1]
    r[25] = k[24] * Y[20]
    return [
        -r[1] - r[10] - r[14] - r[23] - r[24] + r[2] + r[3] + r[9] + r[11] + r[12] + r[22] + r[25],
        -r[2] - r[3] - r[9] - r[12] + r[1] + r[21],
        -r[15] + r[1] + r[17] + r[19] + r[22],
        -r[2] - r[16] - r[17] - r[23] + r[15],
        -r[3] + 2 * r[4] + r[6] + r[7] + r[13] + r[20],
        -r[6] - r[8] - r[14] - r[20] + r[3] + 2 * r[18],
        -r[4] - r[5] - r[6] + r[13],
        r[4] + r[5] + r[6] + r[7],
        -r[7] - r[8],
        -r[12] + r[7] + r[9],
        -r[9] - r[10] + r[8] + r[11],
        r[9],
        -r[11] + r[10],
        -r[13] + r[12],
        r[14],
        -r[18] - r[19] + r[16],
        -r[20],
        r[20],
        -r[21] - r[22] - r[24] + r[23] + r[25],
        -r[25] + r[24],
    ]


def plei_feval(y):
    x, yy = y[0:7], y[7:14]
    f = list(y[14:28]) + [0.0] * 14
    for i in range(7):
        for j in range(7):
            if j != i:
                rij = ((x[i] - x[j]) ** 2 + (yy[i] - yy[j]) ** 2) ** 1.5
                f[14 + i] += (j + 1) * (x[j] - x[i]) / rij
                f[21 + i] += (j + 1) * (yy[j] - yy[i]) / rij
    return f


CASES = [
    ("orego", kinetics.OregoField, kinetics.orego_rhs, orego_feval, kinetics.OREGO_Y0),
    ("hires", kinetics.HiresField, kinetics.hires_rhs, hires_feval, kinetics.HIRES_Y0),
    ("e5", kinetics.E5Field, kinetics.e5_rhs, e5_feval, kinetics.E5_Y0),
    ("pollu", kinetics.PolluField, kinetics.pollu_rhs, pollu_feval, kinetics.POLLU_Y0),
    ("pleiades", pleiades.PleiadesField, pleiades.pleiades_rhs, plei_feval, pleiades.PLEI_Y0),
]


@pytest.mark.parametrize("name,field,rhs,feval,y0", CASES, ids=[c[0] for c in CASES])
def test_f_matches_the_source_transcription(name, field, rhs, feval, y0):
    gen = np.random.default_rng(1)
    points = [np.asarray(y0, dtype=np.float64)]
    points += [np.abs(np.asarray(y0)) + gen.uniform(0.01, 1.0, len(y0)) for _ in range(3)]
    f = field()
    for y in points:
        want = np.asarray(feval(list(y)))
        np.testing.assert_allclose(_torch(f, y), want, rtol=1e-13, atol=1e-13 * np.abs(want).max())
        np.testing.assert_allclose(rhs(0.0, y), want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


def test_hires_f_at_hand_points():
    # at y0 only y1 and y8 are nonzero: f1 = -1.71 + 0.0007, f2 = 1.71, the rest 0
    f0 = _torch(kinetics.HiresField(), kinetics.HIRES_Y0)
    np.testing.assert_allclose(f0, [-1.7093, 1.71, 0, 0, 0, 0, 0, 0], rtol=1e-14, atol=1e-16)
    ones = _torch(kinetics.HiresField(), [1.0] * 8)
    want = [7.0407, -7.04, -9.565, 8.91, -0.885, -277.34, 278.19, -278.19]
    np.testing.assert_allclose(ones, want, rtol=1e-13)


def test_orego_f_at_the_initial_value():
    want = [77.27 * (1 - 8.375e-6), -1 / 77.27, -0.322]
    np.testing.assert_allclose(_torch(kinetics.OregoField(), [1.0, 2.0, 3.0]), want, rtol=1e-14)


def test_e5_f_at_ones_and_its_linear_invariant():
    f = _torch(kinetics.E5Field(), [1.0, 1.0, 1.0, 1.0])
    want = [-7.89e-10 - 1.1e7, 7.89e-10 - 1.13e9, 7.89e-10 - 1.13e9 - (1.1e7 - 1130.0),
            1.1e7 - 1130.0]
    np.testing.assert_allclose(f, want, rtol=1e-15)
    assert f[1] - f[2] - f[3] == pytest.approx(0.0, abs=1e-6)  # (y2 - y3 - y4)' = 0


def test_plei_two_bodies_attract_by_the_other_mass():
    # only bodies 1 (mass 1) at (0, 0) and 2 (mass 2) at (1, 0) nearby; the rest far away
    y = np.zeros(28)
    y[0:7] = [0.0, 1.0, 1e6, 2e6, 3e6, 4e6, 5e6]
    acc = plei_feval(list(y))
    got = _torch(pleiades.PleiadesField(), y)
    assert got[14] == pytest.approx(2.0, rel=1e-9)  # body 1 pulled by mass 2 at distance 1
    assert got[15] == pytest.approx(-1.0, rel=1e-9)  # body 2 pulled back by mass 1
    np.testing.assert_allclose(got, acc, rtol=1e-13, atol=1e-20)


def test_pollu_is_twenty_species_and_twenty_five_reactions():
    s = kinetics.pollu_stoichiometry()
    assert s.shape == (20, 25)
    assert len(kinetics.POLLU_K) == len(kinetics.POLLU_REACTANTS) == 25


@pytest.mark.parametrize(
    "y_end,n",
    [(kinetics.OREGO_Y_360, 3), (kinetics.HIRES_Y_END, 8), (kinetics.POLLU_Y_60, 20),
     (pleiades.PLEI_Y_3, 28), (kinetics.E5_Y_BARI, 4)],
    ids=["orego", "hires", "pollu", "plei", "e5"],
)
def test_published_end_values_are_complete(y_end, n):
    assert len(y_end) == n and all(np.isfinite(y_end))


def test_e5_reference_is_hairers_with_y2_equal_to_y3():
    p = kinetics.build_e5()
    y = p.reference.ys[-1]
    # Hairer's e5_exact.txt at t = 1e13; (y2 - y3 - y4)' = 0 and y4(1e13) = 0 force y2 = y3
    assert y[1] == y[2] == 8.8612334976263783420e-23
    assert y[0] == 0.0 and y[3] == 0.0
    assert "e5_exact.txt" in p.reference.provenance
    assert p.reference.provenance.startswith("published: y(1e13)")
    # the bound y1(t) <= y1(0) exp(-A t) underflows at t = 1e13
    assert kinetics.E5_Y0[0] * np.exp(-kinetics.E5_K[0] * kinetics.E5_TEND) == 0.0


def test_e5_keeps_the_bari_pair_aside():
    p = kinetics.build_e5()
    bari = p.extra["bari_y_end"]
    assert bari == (0.1152903278711829e-290, 0.8867655517642120e-22, 0.8854814626268838e-22, 0.0)
    assert "0.14%" in p.extra["bari_note"] and "y2 = y3" in p.extra["bari_note"]
    # the reason it is not used: its y2 and y3 differ by 0.14%, each ~0.07% off the reference
    assert (bari[1] - bari[2]) / bari[2] == pytest.approx(1.45e-3, rel=0.01)
    for b in bari[1:3]:
        assert abs(b - p.reference.ys[-1][1]) / p.reference.ys[-1][1] == pytest.approx(
            7.2e-4, rel=0.02)
    assert not np.array_equal(p.reference.ys[-1], bari)


@pytest.mark.parametrize("build", [kinetics.build_orego, kinetics.build_hires,
                                   kinetics.build_pollu, pleiades.build_pleiades])
def test_published_problems_score_the_published_end_row(build):
    p = build()
    assert p.reference.provenance.startswith("published: y(")
    assert "computed:" in p.reference.provenance  # the intermediate rows say what they are
    assert np.isfinite(p.reference.ys).all()


@pytest.mark.parametrize(
    "name,y_end,rtol",
    [("orego", kinetics.OREGO_Y_360, 1e-9), ("hires", kinetics.HIRES_Y_END, 1e-9),
     ("pollu", kinetics.POLLU_Y_60, 1e-9), ("pleiades", pleiades.PLEI_Y_3, 1e-9)],
)
def test_stored_rows_agree_with_the_published_end_value(name, y_end, rtol):
    """Each stored file also holds the end time; it must reproduce the published value."""
    from problems import references

    stored = references.load(name)
    np.testing.assert_allclose(stored.ys[-1], y_end, rtol=rtol, atol=1e-20)
