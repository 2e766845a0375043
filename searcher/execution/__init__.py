"""How trials run: serially in this process (local), in worker processes (processes), as submitit jobs (submitit).

The concurrent runners share one recording loop (pool.PoolRunner); their backends are
imported lazily (submitit only when asked for).
"""

from searcher.execution.local import LocalRunner, Progress, QuietProgress, run_one

__all__ = ["LocalRunner", "Progress", "QuietProgress", "run_one"]
