"""``python -m hodei_backends._cli``: the ``hodei`` command without its console script."""

import sys

from . import main

sys.exit(main())
