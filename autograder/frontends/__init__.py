"""The ways in: the CLI, CI, the nbgrader plugin, release, batch grading. Thin."""
