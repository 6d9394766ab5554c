"""``python -m sfp``: the same as the ``sfp`` command."""

import sys

from sfp.cli import main

sys.exit(main())
