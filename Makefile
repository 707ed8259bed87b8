# One-command set-up: `make demo` (main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# nbgrader runs `alembic` (and tests run `nbgrader`, `jupyter`) from the virtual environment.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test venv system-deps assignments clean

demo: $(STAMP)
	$(PY) -m autograder demo

# The suite mostly waits (sandboxes, kernels, nbgrader): two processes, each test file whole in one
# of them (module-scoped sandboxes and batches are built once).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

venv: $(STAMP)

$(STAMP): requirements.txt
	$(MAKE) system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The notebooks' `python3` kernel is this venv's interpreter (for Jupyter, nbclient, nbgrader).
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $(STAMP)

# System packages, installed where the machine allows (root + apt): bubblewrap is the sandbox of
# official grading; shellcheck lets actionlint check the workflows' scripts.
SYSTEM_PACKAGES := bubblewrap:bwrap shellcheck:shellcheck
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair#*:}" >/dev/null 2>&1 || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null \
	      || echo "warning: could not install$$missing; official grading needs bubblewrap"; \
	  else echo "warning: missing system packages:$$missing (official grading needs bubblewrap)"; fi; \
	fi

# Regenerate the student notebooks from solutions/ (nbgrader generate_assignment, all assignments).
assignments: $(STAMP)
	$(PY) -m autograder.frontends.release

clean:
	rm -rf $(VENV) .pytest_cache build reports
