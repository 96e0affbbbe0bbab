"""The built-in training tasks (imported by the harness at discovery)."""

import training.digits  # noqa: F401
import training.tasks  # noqa: F401
