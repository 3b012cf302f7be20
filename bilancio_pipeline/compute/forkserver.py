"""Preloaded by the simulation pool's forkserver (compute/local.py), and imported nowhere else.

The forkserver is a child of the process that made the pool (a Dagster run worker, the CLI);
the pool's workers are its children. If that process is killed outright, neither learns of it
and both would stay for as long as the machine runs. So the forkserver ends with its parent, and
each worker with the forkserver (local.py's worker initializer).
"""

import signal

from bilancio_pipeline.lifetime import end_with_parent

end_with_parent(signal.SIGKILL)
