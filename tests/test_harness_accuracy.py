import math

import numpy as np
import pytest

from harness.measure.accuracy import measure_accuracy


def test_metrics_match_hand_computed_values():
    ref = np.array([[1.0, 2.0], [10.0, -4.0]])
    ys = np.array([[1.0, 2.1], [10.001, -4.0]])
    acc = measure_accuracy(ys, ref, atol=1e-3, rtol=1e-3)
    assert acc.err_max == pytest.approx(0.1)
    assert acc.err_final == pytest.approx(1e-3)
    scaled = np.array([0, 0.1 / (1e-3 + 2e-3), 1e-3 / (1e-3 + 1e-2), 0])
    assert acc.err_rms_scaled == pytest.approx(math.sqrt(np.mean(scaled**2)))
    # end point: relative errors 1e-4 and 0 -> 4 digits
    assert acc.scd == pytest.approx(4.0)
    # mescd: max |err| / (atol/rtol + |ref|) = 1e-3 / 11
    assert acc.mescd == pytest.approx(-math.log10(1e-3 / 11))


def test_zero_reference_component_uses_absolute_error():
    ref = np.array([[1.0, 0.0], [1.0, 0.0]])
    ys = np.array([[1.0, 0.0], [1.0, 1e-7]])
    acc = measure_accuracy(ys, ref, atol=1e-6, rtol=1e-6)
    assert acc.scd == pytest.approx(7.0)


def test_nan_reference_entries_are_not_scored():
    ref = np.array([[1.0, 1.0], [np.nan, np.nan], [2.0, 2.0]])
    ys = np.array([[1.0, 1.0], [123.0, 456.0], [2.0, 2.0 + 1e-5]])
    acc = measure_accuracy(ys, ref, atol=1e-6, rtol=1e-6)
    assert acc.err_max == pytest.approx(1e-5)


def test_nonfinite_solution_has_no_accuracy():
    ref = np.ones((2, 2))
    acc = measure_accuracy(np.array([[1.0, 1.0], [np.nan, 1.0]]), ref, atol=1e-6, rtol=1e-6)
    assert math.isnan(acc.err_max) and math.isnan(acc.scd)


def test_batched_solution_broadcasts_reference():
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])[:, None, :]
    ys = np.broadcast_to(ref, (2, 5, 2)).copy()
    ys[1, 3, 0] += 0.03
    acc = measure_accuracy(ys, ref, atol=1e-6, rtol=1e-6)
    assert acc.err_max == pytest.approx(0.03)
    assert acc.scd == pytest.approx(2.0)


def test_exact_agreement_is_capped_at_float64_digits():
    ref = np.ones((2, 3))
    acc = measure_accuracy(ref.copy(), ref, atol=1e-6, rtol=1e-6)
    assert acc.scd == pytest.approx(-math.log10(np.finfo(np.float64).eps / 2))


def test_scd_over_chosen_components_only():
    """The IVP test set scores PLEI's scd over the positions only."""
    ref = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    ys = ref.copy()
    ys[-1] += [1e-8, 1e-6, 1e-2]
    acc = measure_accuracy(ys, ref, atol=1e-6, rtol=1e-6, scd_components=[0, 1])
    assert acc.scd == pytest.approx(6.0)
    assert acc.err_max == pytest.approx(1e-2)  # the other metrics still see every component
