"""`python -m ebbtide.runtime NAME[:VERSION] ...`: run one replica (see ebbtide.runtime.cli)."""

import sys

from ebbtide.runtime.cli import main

sys.exit(main())
