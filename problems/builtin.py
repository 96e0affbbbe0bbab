"""Import the built-in problem families so that their ``@register_problem`` decorators run.

One module per family; a new family is a new module here. Imported once by
``harness.plugins.load_defaults`` (the module cache makes a second import a no-op). Each family
may list ``COMPUTED`` (stored references, ``python -m problems.make_references``) and ``CHECKS``
(how ``python -m harness.refs --check`` verifies its references).
"""

from problems import (  # noqa: F401  (imported for registration)
    chaotic,
    detest,
    kinetics,
    learned,
    nonstiff,
    pleiades,
    stiff,
)

FAMILIES = (nonstiff, detest, pleiades, chaotic, stiff, kinetics, learned)
