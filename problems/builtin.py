"""Import the built-in problem families so that their ``@register_problem`` decorators run.

One module per family; a new family is a new module here. Imported once by
``harness.registry.load_builtins`` (the module cache makes a second import a no-op).
"""

from problems import learned, nonstiff, stiff  # noqa: F401  (imported for registration)

FAMILIES = (nonstiff, stiff, learned)
