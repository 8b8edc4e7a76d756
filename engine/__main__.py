"""Entry point: ``python -m lcfusion.engine``."""

import sys

from .cli import main

sys.exit(main())
