"""Grading: the engine's stages, the hidden-suite runners, comparison, forbidden calls, checks."""
