"""How trials run: in this process for now (worker processes and SLURM build on the same Runner)."""

from searcher.execution.local import LocalRunner, Progress, QuietProgress, run_one

__all__ = ["LocalRunner", "Progress", "QuietProgress", "run_one"]
