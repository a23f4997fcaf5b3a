"""``python -m tmrl2``."""

import sys

from tmrl2.cli import main

sys.exit(main())
