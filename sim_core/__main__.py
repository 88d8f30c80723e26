"""``python -m sim_core``: see ``sim_core.cli``."""

import sys

from sim_core.cli import main

sys.exit(main())
