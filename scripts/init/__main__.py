"""python3 -m scripts.init: see scripts/init/__init__.py."""

import sys

from scripts.init.run import main

sys.exit(main())
