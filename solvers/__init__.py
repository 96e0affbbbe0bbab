"""Built-in and plugin ODE solvers for odebench."""
