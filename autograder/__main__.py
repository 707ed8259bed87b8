"""``python -m autograder ...`` (see ``autograder/frontends/cli.py``)."""

from autograder.frontends.cli import main

raise SystemExit(main())
