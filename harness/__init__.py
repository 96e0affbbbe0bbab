"""odebench harness: CLI, registries, suites, runner, measurement, results."""
