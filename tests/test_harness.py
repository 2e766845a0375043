"""The test suite's own machinery, checked where it runs: a shared search runs once per suite, not once per process."""

import pytest


def test_the_tests_of_a_shared_search_are_grouped_onto_one_test_process(request):
    """scripts/test.sh runs pytest-xdist with `--dist loadgroup`; conftest.py marks each test reading a shared search
    with its group, which pytest-xdist appends to the test id. pytest 9.2 ids tests by a structured id that
    pytest-xdist 3.8 cannot append to (pytest-xdist#1386): nothing failed, and each process ran each shared search
    for itself (~65 s of CPU). constraints.txt pins the pair that groups."""
    if not getattr(request.config.option, "loadgroup", False):  # (set in each pytest-xdist process)
        pytest.skip("not run with --dist loadgroup (scripts/test.sh runs it so)")
    grouped = [item.nodeid for item in request.session.items if item.get_closest_marker("xdist_group")]
    if not grouped:
        pytest.skip("no test reading a shared search was collected")
    assert [nodeid for nodeid in grouped if "@" not in nodeid] == [], "pytest-xdist did not group these: install constraints.txt's pytest"
