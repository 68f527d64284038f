"""``python -m umt.cli ...`` (e.g. under ``torchrun``), the same as the ``umt`` command."""

import sys

from umt.cli.main import main

sys.exit(main())
