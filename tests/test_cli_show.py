"""`python -m harness show RUN_DIR`: the run's headline findings on the terminal."""

from __future__ import annotations

from cli_runner import REPO, run_cli

SMALL = REPO / "tests" / "fixtures" / "run_small"


def test_show_prints_the_headline_findings_of_a_stored_run():
    show = run_cli("show", str(SMALL))
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("Findings")))
    assert "10^-scd" in lines[head]  # the one error measure is named
    findings = [line for line in lines[head + 1:] if line.startswith("- ")]
    # run_small has non-stiff and stiff problems at 3 and 6 digits: one sentence per pair
    assert [f.split(",")[0] for f in findings] == [
        "- Non-stiff problems", "- Non-stiff problems", "- Stiff problems", "- Stiff problems"]
    assert "pick scipy-bdf" in findings[2]  # the fastest stiff solver to 3 digits in that run
