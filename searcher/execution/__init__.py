"""How trials run: one Runner (runner.py) on a backend, in this process (in_process.py), in worker processes
(processes.py) or as submitit jobs (submitit.py); what one trial is, wherever it runs (work.py).

The backends are imported lazily (submitit only when asked for).
"""

from searcher.execution.in_process import InProcessBackend, serial_runner
from searcher.execution.runner import Backend, Progress, QuietProgress, Runner, TrialRecorder

__all__ = ["Backend", "InProcessBackend", "Progress", "QuietProgress", "Runner", "TrialRecorder", "serial_runner"]
