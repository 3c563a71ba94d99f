"""`python -m kithnet` runs the command line."""

from kithnet.cli import main

raise SystemExit(main())
