"""`python -m ebbtide.runtime NAME[:VERSION] ...`: run one replica (see ebbtide.runtime.cli)."""

import sys

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.runtime.timeline import StartTimeline

timeline = StartTimeline.begin(SYSTEM_CLOCK)

from ebbtide.runtime.cli import main  # noqa: E402

sys.exit(main(timeline=timeline))
