"""`python -m pricing_lab` runs the command line."""

from pricing_lab.cli import main

raise SystemExit(main())
