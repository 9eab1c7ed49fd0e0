"""`python -m modelbonsai ...` is the same as `bonsai ...`."""

import sys

from .cli import main

sys.exit(main())
