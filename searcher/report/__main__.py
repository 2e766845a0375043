"""`python -m searcher.report --search-name NAME`: rebuild a search's report from the tracking store alone.

Nothing is retrained: runs, tags, params, metric histories and decision logs are
read back from MLflow, the figures redrawn and report.html/report.md written to
--out (default ./report-NAME). --log also attaches them to the search's runs again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m searcher.report", description=__doc__.splitlines()[0])
    parser.add_argument("--search-name", required=True, help="the search's name (search.name); the latest run of that name")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="the MLflow store (default: sqlite:///mlflow.db here)")
    parser.add_argument("--experiment", default=None, help="restrict the lookup to this experiment (default: any)")
    parser.add_argument("--out", type=Path, default=None, help="folder for report.html, report.md and figures/ (default: ./report-NAME)")
    parser.add_argument("--log", action="store_true", help="also attach the rebuilt files to the search's MLflow runs")
    parser.add_argument(
        "--trial-plots", action=argparse.BooleanOptionalAction, default=None, help="per-trial learning-curve figures (default: when the search took >= 3 s of its wall time a trial)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from searcher.report.build import publish
    from searcher.tracking import TrackingError, check_uri
    from searcher.tracking.reader import SearchNotFound, find_search_run
    from searcher.tracking.store import client_for

    try:
        check_uri(args.tracking_uri)
        if args.tracking_uri.startswith("sqlite:///") and not Path(args.tracking_uri.removeprefix("sqlite:///")).expanduser().exists():
            raise TrackingError(f"--tracking-uri {args.tracking_uri}: no such database file; pass the store the search used.")
        run_id = find_search_run(client_for(args.tracking_uri), args.search_name, args.experiment)
    except (TrackingError, SearchNotFound) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    folder = args.out or Path(f"report-{args.search_name}")
    published = publish(args.tracking_uri, run_id, folder, trial_plots=args.trial_plots, log=args.log)
    print(f"report: {published.location}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
