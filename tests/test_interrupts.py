"""SIGUSR2 in a job whose scheduler handles it (submitit requeues the job): real signals, in this process."""

import os
import signal

import pytest

from searcher.execution import interrupts


@pytest.fixture(autouse=True)
def handlers_restored():
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


def test_sigterm_of_the_requeue_arriving_inside_the_schedulers_handler_is_ignored():
    seen = []

    def requeue(signum, frame):  # submitit's: `scontrol requeue` (SLURM's SIGTERM follows at once), then exit
        os.kill(os.getpid(), signal.SIGTERM)
        seen.append(signal.getsignal(signal.SIGTERM))
        raise SystemExit(-1)

    signal.signal(signal.SIGUSR2, requeue)
    interrupts.install()
    with pytest.raises(SystemExit):  # not Interrupted: the search is requeued, not stopped
        os.kill(os.getpid(), signal.SIGUSR2)
    assert seen == [signal.SIG_IGN]
    interrupts.restore()
    assert signal.getsignal(signal.SIGUSR2) is requeue


def test_a_job_the_scheduler_does_not_requeue_stops_the_search():
    def no_requeue(signum, frame):  # submitit's, after max_num_timeout requeues
        raise RuntimeError("Job not requeued because: timed-out too many times.")

    signal.signal(signal.SIGUSR2, no_requeue)
    interrupts.install()
    with pytest.raises(interrupts.Interrupted) as stopped:  # not an Exception a trial would take for its own failure
        os.kill(os.getpid(), signal.SIGUSR2)
    assert stopped.value.exit_code == 143
    with pytest.raises(interrupts.Interrupted):
        interrupts.check()  # also where the first raise was swallowed
    interrupts.restore()
    interrupts.check()  # forgotten once the search is over: the next search in this process starts clean


def test_a_stop_python_swallows_in_a_weakref_callback_is_delivered_again_unprinted(capfd):
    """SIGTERM in the first seconds of stage 0 once printed "Exception ignored in ... Interrupted: 143" (the handler ran
    inside a weakref callback of SQLAlchemy's, where Python swallows exceptions) and stopped only at the next epoch."""
    import time
    import weakref

    class Collected:
        pass

    def callback(reference):  # the signal arrives while Python runs a weakref callback
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:  # the handler runs here; Python swallows its Interrupted
            pass

    interrupts.install()
    try:
        thing = Collected()
        reference = weakref.ref(thing, callback)
        with pytest.raises(interrupts.Interrupted) as stopped:
            del thing  # the callback runs and swallows the stop: it is delivered again, here, in ordinary code
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
        assert stopped.value.exit_code == 143 and reference() is None
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal while the first stop is on its way up: ignored
        time.sleep(0.1)
    finally:
        interrupts.restore()
    printed = capfd.readouterr()
    assert "Exception ignored" not in printed.err + printed.out and "Traceback" not in printed.err + printed.out
