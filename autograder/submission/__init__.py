"""A submission as data: the notebook parsed, its graded code extracted, the static scan."""
