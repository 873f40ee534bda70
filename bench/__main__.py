"""`python -m bench` (and `make bench`)."""

import sys

from bench.cli import main

sys.exit(main())
