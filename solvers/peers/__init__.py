"""Peer solvers: other projects' ODE solvers behind our :class:`~solvers.base.Solver` contract.

One module per peer, each loaded through the ``odebench.solvers`` entry-point group (see
``pyproject.toml``) and registering its solvers when imported:

- :mod:`solvers.peers.tde`: torchdiffeq (Chen et al., NeurIPS 2018), ``tde-*``;
- :mod:`solvers.peers.tode`: torchode (Lienen & Günnemann, 2022), ``to-*``;
- :mod:`solvers.peers.hairer`: Hairer's Fortran DOPRI5 and DOP853 as scipy ships them
  (``scipy.integrate.ode``), ``hairer-*``.

torchdiffeq and torchode are optional (``pip install 'odebench[peers]'``). Without one, its
module still imports: it registers nothing, lists the missing package in its ``MISSING`` and
records it with :func:`harness.registry.note_unavailable`, so ``python -m harness list`` can say
how to add it.

Every peer calls the ``f`` it is given for every evaluation, so the harness's counting wrapper
sees each one; ``Solution.nfe`` is the peer's own count where it reports one, so the two can be
compared.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from harness.registry import note_unavailable

PEERS_FIX = "pip install 'odebench[peers]'"


def optional_import(name: str, missing: list[str]) -> ModuleType | None:
    """Import the peer package ``name``, or record why not (in ``missing`` and the registry)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing.append(name)
        note_unavailable(name, f"{type(exc).__name__}: {exc}", PEERS_FIX)
        return None
