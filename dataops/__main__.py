"""`python -m dataops`: the same as the `dataops` command."""

import sys

from dataops.cli import main

sys.exit(main())
