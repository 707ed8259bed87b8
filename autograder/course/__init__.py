"""The course: every exercise declared once (the registry) and how each one is called."""
