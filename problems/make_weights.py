"""Write the fixed MLP weights of the learned problems to ``problems/data/weights/<name>.json``.

    python -m problems.make_weights            # all
    python -m problems.make_weights mlp-hard   # only the named ones
    python -m problems.make_weights --check    # redraw and compare with the files, write nothing

Each file holds the float64 weights (JSON floats read back bit for bit), how they were drawn
(seed, width, gains, numpy version) and a sha256 checksum of the values that the problems verify
when they load them. The draw is numpy ``default_rng(seed)`` (PCG64), whose stream numpy keeps
stable; if a future numpy drew differently, ``--check`` says so and the shipped files still hold.
After changing weights, regenerate the references: ``python -m problems.make_references``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import asdict

import numpy as np

from problems import learned


def record_for(spec: learned.MLPSpec) -> dict:
    weights = learned.draw_weights(spec)
    return {
        "format": 1,
        "name": spec.name,
        "generator": {
            **asdict(spec),
            "rng": "numpy.random.default_rng(seed) (PCG64), order w1 b1 w2 b2 w3 b3",
            "numpy": np.__version__,
        },
        "created": datetime.date.today().isoformat(),
        "command": learned.WEIGHTS_COMMAND,
        **{k: weights[k].tolist() for k in learned.WEIGHT_KEYS},
        "sha256": learned.mlp_weights_sha256(weights),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m problems.make_weights", description=__doc__)
    parser.add_argument("names", nargs="*", help="weights to make (default: all)")
    parser.add_argument("--check", action="store_true", help="compare with the files only")
    args = parser.parse_args(argv)
    known = {s.name: s for s in learned.SPECS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"unknown MLP(s) {unknown}; valid: {', '.join(known)}", file=sys.stderr)
        return 2
    status = 0
    for spec in [known[n] for n in args.names] if args.names else learned.SPECS:
        record = record_for(spec)
        path = learned.weights_path(spec.name)
        if args.check:
            stored = learned.load_weights(spec.name)
            same = learned.mlp_weights_sha256(stored) == record["sha256"]
            print(f"{spec.name}: {path} {'matches' if same else 'DIFFERS FROM'} a fresh draw")
            status |= 0 if same else 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{spec.name}: wrote {path} sha256 {record['sha256'][:12]}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
