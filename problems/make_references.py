"""Regenerate every computed reference in ``problems/data`` with scipy.

    python -m problems.make_references            # all
    python -m problems.make_references mlp        # only the named ones
    python -m problems.make_references mlp-hard   # a problem's name: its file is mlp_hard
    python -m problems.make_references --list     # what would be made

Each family module lists its computed references as ``COMPUTED`` (``ComputedSpec`` records);
this command solves each with its method and tolerances, solves it again with an independent
method as a cross-check, and writes the values, how they were made and their sha256 checksum
(see ``problems.references``). It prints the cross-check so a person can judge the digits.
"""

from __future__ import annotations

import argparse
import sys

from problems import references
from problems.builtin import FAMILIES


def all_specs() -> list[references.ComputedSpec]:
    specs = [spec for family in FAMILIES for spec in getattr(family, "COMPUTED", [])]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise references.ReferenceDataError(f"computed reference names used twice: {dupes}")
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m problems.make_references", description=__doc__)
    parser.add_argument("names", nargs="*", help="references to make (default: all)")
    parser.add_argument("--list", action="store_true", help="list the references and exit")
    args = parser.parse_args(argv)
    specs = all_specs()
    known = {s.name: s for s in specs}
    if args.list:
        for s in specs:
            where = references.path_for(s.name)
            print(f"{s.name}: {s.method} rtol={s.rtol:g} atol={s.atol:g} -> {where}")
        return 0
    names = [n.replace("-", "_") for n in args.names]  # a problem's name also names its file
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown reference(s) {unknown}; valid: {', '.join(known)}", file=sys.stderr)
        return 2
    for spec in [known[n] for n in names] if names else specs:
        record = references.compute(spec)
        path = references.write(record)
        cc = record["cross_check"]
        print(
            f"{spec.name}: wrote {path} sha256 {record['sha256'][:12]}; "
            f"{cc['solver']} differs by {cc['max_abs_diff']:.2e} abs, "
            f"{cc['max_scaled_diff']:.2f} in units of atol+rtol|y|"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
