"""The live dashboard: a read-only web page served by the control plane on a loopback port,
and the JSON feed behind it.

`recorder` keeps, per endpoint, a ring of one-second samples (traffic, latency, replicas, each
scaling metric against its target) and the decision trail; `feed` turns them into the JSON that
the page and scripts read; `server` serves the page, its static files and the feed; `metrics`
exports the same numbers to Prometheus.
"""

from ebbtide.dashboard.recorder import Recorder, RecorderSettings
from ebbtide.dashboard.server import DashboardServer, url_file

__all__ = ["DashboardServer", "Recorder", "RecorderSettings", "url_file"]
