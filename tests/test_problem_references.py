"""Stored computed references: they reload, verify their checksum, and refuse tampering."""

from __future__ import annotations

import json

import numpy as np
import pytest

from problems import references
from problems.make_references import all_specs

SPECS = all_specs()
NAMES = [s.name for s in SPECS]


@pytest.mark.parametrize("name", NAMES)
def test_stored_reference_reloads_and_verifies(name):
    stored = references.load(name)
    spec = next(s for s in SPECS if s.name == name)
    np.testing.assert_array_equal(stored.t, np.asarray(spec.t))
    assert stored.ys.shape == (len(spec.t), len(spec.y0))
    assert np.isfinite(stored.ys).all()
    for key in ("solver", "rtol", "atol", "created", "versions", "command", "cross_check"):
        assert key in stored.meta, key
    assert stored.meta["rtol"] == spec.rtol and stored.meta["atol"] == spec.atol
    assert stored.meta["sha256"][:12] in stored.provenance


def test_every_data_file_has_a_spec_and_every_spec_a_file():
    files = {p.stem for p in references.DATA_DIR.glob("*.json")}
    assert files == set(NAMES)


def _copy_with(tmp_path, name, edit):
    record = json.loads(references.path_for(name).read_text())
    edit(record)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(record))
    return path


def test_a_tampered_value_is_detected(tmp_path):
    def nudge(record):
        record["ys"][-1][0] = np.nextafter(record["ys"][-1][0], np.inf)  # one ulp

    path = _copy_with(tmp_path, "lotka_volterra", nudge)
    with pytest.raises(references.ReferenceDataError, match="checksum"):
        references.load("lotka_volterra", path)


def test_a_tampered_time_is_detected(tmp_path):
    def shift(record):
        record["t"][3] += 1e-9

    path = _copy_with(tmp_path, "mlp", shift)
    with pytest.raises(references.ReferenceDataError, match="checksum"):
        references.load("mlp", path)


def test_a_missing_file_says_how_to_regenerate(tmp_path):
    with pytest.raises(references.ReferenceDataError, match="make_references"):
        references.load("nothing", tmp_path / "nothing.json")


def test_check_times_refuses_other_output_times():
    stored = references.load("lotka_volterra")
    with pytest.raises(references.ReferenceDataError, match="other output times"):
        references.check_times(stored, stored.t[:-1])


def test_the_json_round_trip_keeps_every_bit():
    x = np.array([0.1, 1 / 3, np.pi * 1e-13, 2.0**-1074])
    back = np.asarray(json.loads(json.dumps(x.tolist())))
    assert references.values_sha256(x, x) == references.values_sha256(back, back)


def test_recomputing_a_reference_reproduces_the_stored_values():
    spec = next(s for s in SPECS if s.name == "lotka_volterra")
    record = references.compute(spec)
    stored = references.load(spec.name)
    # same scipy gives the same bits; another scipy version may differ in the last digits
    np.testing.assert_allclose(np.asarray(record["ys"]), stored.ys, rtol=1e-11, atol=1e-13)
    assert record["cross_check"]["max_abs_diff"] < 1e-10
