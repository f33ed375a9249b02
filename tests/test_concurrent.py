"""cdiscforge.concurrent: the second core's part of a build in a forked child, and what must
hold whatever the child does (its result or its exception comes back, it is never left
running, the caller's clean-up runs once)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdiscforge import concurrent
from cdiscforge.concurrent import Child, ChildFailed


def run_beside(in_child: Callable[[], Any], here: Callable[[], Any]) -> tuple[Any, Any]:
    """`in_child` in a forked child while `here` runs in this process; both results (what
    build.py does with a Child)."""
    with Child(in_child) as child:
        mine = here()
        return child.result(), mine


@pytest.fixture(params=["1", "2"])
def workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CDISCFORGE_WORKERS", request.param)
    return request.param


def test_both_results_come_back_and_the_child_is_another_process(workers: str) -> None:
    parent = os.getpid()
    child_pid, here = run_beside(lambda: os.getpid(), lambda: "here")
    assert here == "here"
    assert (child_pid != parent) == (workers == "2" and concurrent.workers() == 2)


def test_the_childs_exception_is_raised_in_the_parent(workers: str) -> None:
    def fail() -> None:
        raise ValueError("bad cell in LB row 7")

    with pytest.raises(ValueError, match="bad cell in LB row 7"):
        run_beside(fail, lambda: None)


class _Unpicklable(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")
        self.lock = threading.Lock()  # no pickling makes a lock travel (tblib's neither)


def test_an_exception_that_does_not_pickle_arrives_as_its_text(monkeypatch) -> None:
    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")
    if concurrent.workers() < 2:
        pytest.skip("one core: nothing is forked")

    def fail() -> None:
        raise _Unpicklable("x", "y")

    with pytest.raises(ChildFailed, match=r"_Unpicklable: x/y"):
        run_beside(fail, lambda: None)


def _refuse_to_load() -> None:
    raise ValueError("cannot be rebuilt here")


class _DoesNotLoad:
    """Pickles, but loading it back fails (what a result holding an exception class with a
    custom __init__ does)."""

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return _refuse_to_load, ()


def test_a_result_that_does_not_load_back_is_named(monkeypatch) -> None:
    """The child sends a result without loading it back first (that cost 0.3 s for MK at
    10,000 subjects); one that does not load is a ChildFailed naming why, not a bare
    error of the unpickler."""
    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")
    if concurrent.workers() < 2:
        pytest.skip("one core: nothing is forked")
    with pytest.raises(ChildFailed, match=r"did not load back: ValueError: cannot be rebuilt"):
        run_beside(lambda: [1, _DoesNotLoad()], lambda: None)


def _arrays() -> dict[str, Any]:
    """A result of the shapes a built dataset has: numpy, masked, categorical and Arrow
    text columns (odd lengths: the arrays do not end on the file's alignment), a scalar."""
    import numpy as np
    import pandas as pd

    n = 100_003
    frame = pd.DataFrame(
        {
            "num": np.arange(n, dtype=np.float64) / 3,
            "masked": pd.array([1.5, None, -0.0] * (n // 3) + [2.0] * (n % 3), dtype="Float64"),
            "cat": pd.Categorical(["b", "a", None] * (n // 3) + ["a"] * (n % 3)),
            "text": pd.array(["u", None, "vw"] * (n // 3) + ["x"] * (n % 3), "string[pyarrow]"),
            "byte": np.arange(n, dtype=np.int8),
        }
    )
    return {"frame": frame, "empty": frame.iloc[:0], "codes": np.arange(7, dtype=np.int16), "n": n}


@pytest.mark.parametrize("shared", [True, False])
def test_a_result_s_arrays_come_back_equal_and_writable(monkeypatch, shared: bool) -> None:
    """Through the shared file (mapped privately: a write here changes this copy only) or,
    without one, in the pickle."""
    import mmap

    import numpy as np

    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")
    if concurrent.workers() < 2:
        pytest.skip("one core: nothing is forked")
    if not shared:
        monkeypatch.setattr(concurrent, "_shared_file", lambda: -1)
    got, _ = run_beside(_arrays, lambda: None)
    want = _arrays()
    root = got["codes"]
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    mapped = isinstance(getattr(root, "obj", None), mmap.mmap)  # the file's, or the pickle's
    assert mapped == (shared and hasattr(os, "memfd_create"))
    assert got.keys() == want.keys() and got["n"] == want["n"]
    assert (got["codes"] == want["codes"]).all() and got["codes"].dtype == want["codes"].dtype
    for name in ("frame", "empty"):
        assert got[name].dtypes.equals(want[name].dtypes)
        assert got[name].equals(want[name])
    got["codes"][0] = 99
    assert got["codes"][0] == 99
    frame = got["frame"]
    frame.loc[5, "num"] = -1.0
    assert frame.loc[5, "num"] == -1.0 and frame.loc[6, "num"] == want["frame"].loc[6, "num"]


def _forks(monkeypatch: pytest.MonkeyPatch, then: Callable[[], object] = lambda: None) -> list[int]:
    """Two processes, with os.fork recording each child's pid (and calling `then` in the
    parent right after the fork); skips the test on one core."""
    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")
    if concurrent.workers() < 2:
        pytest.skip("one core: nothing is forked")
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
            then()
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return forked


def test_a_failing_parent_kills_the_child_and_leaves_no_process(monkeypatch) -> None:
    forked = _forks(monkeypatch)

    def boom() -> None:
        raise KeyError("parent failed")

    start = time.monotonic()
    with pytest.raises(KeyError):
        run_beside(lambda: time.sleep(60), boom)
    assert time.monotonic() - start < 30  # the sleeping child did not hold us up
    with pytest.raises(ChildProcessError):  # killed and reaped: no child, not even a zombie
        os.waitpid(forked[0], os.WNOHANG)


class _Stopped(Exception):
    """What the test's SIGTERM handler raises (as the build's raises outputs.Interrupted)."""


def _stopped_while_forking(forked: list[int]) -> None:
    """Fork a child under a SIGTERM handler raising _Stopped (the signal is sent by the
    fork, `_forks`): _Stopped must come out of Child, the handler be back in place, and the
    child be killed and reaped (no child, not even a zombie)."""

    def stop(_signum: int, _frame: object) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(_Stopped), Child(lambda: time.sleep(60)) as child:
            child.result()
        assert signal.getsignal(signal.SIGTERM) is stop
    finally:
        signal.signal(signal.SIGTERM, previous)
    with pytest.raises(ChildProcessError):
        os.waitpid(forked[0], os.WNOHANG)


def test_a_signal_while_forking_is_raised_after_it_and_the_child_is_reaped(monkeypatch) -> None:
    # SIGTERM arrives while the fork is in progress (here: sent in the parent just after
    # the real fork, where os.fork's at-fork hooks run). It must not be lost in the hooks
    # nor orphan the child: it is raised once the child is known, and the child is reaped.
    _stopped_while_forking(_forks(monkeypatch, then=lambda: os.kill(os.getpid(), signal.SIGTERM)))


def test_a_signal_another_thread_takes_while_forking_is_raised_after_it(monkeypatch) -> None:
    # The same with another thread alive (Arrow's pools, a thread pool's workers): the
    # forking thread blocks SIGTERM, so the kernel gives it to the other thread, and Python
    # runs the handler in the forking thread wherever it next looks (here: in the fork,
    # whose sleep looks at once).
    def kill_and_wait() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)

    forked = _forks(monkeypatch, then=kill_and_wait)
    stop_waiting = threading.Event()
    other = threading.Thread(target=stop_waiting.wait, daemon=True)
    other.start()
    try:
        _stopped_while_forking(forked)
    finally:
        stop_waiting.set()
        other.join()


def test_the_caller_clean_up_runs_once_even_when_the_child_fails(
    workers: str, tmp_path: Path
) -> None:
    """The child leaves with os._exit: the `finally` of the build around it (which removes
    the staging folder and the lock) runs in the parent only."""
    trace = tmp_path / "finally.txt"

    def fail() -> None:
        raise RuntimeError("child")

    try:
        run_beside(fail, lambda: None)
    except RuntimeError:
        pass
    finally:
        with trace.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
    assert trace.read_text().split() == [str(os.getpid())]


# ------------------------------------------------------------- share_jobs: a shared job queue


def _log_job(path: Path, number: int, seconds: float = 0.0) -> Any:
    """A job that appends '<pid> <number>' to `path` (O_APPEND: whole lines from both
    processes) and returns its number squared."""

    def run() -> int:
        time.sleep(seconds)
        with path.open("a") as fh:
            fh.write(f"{os.getpid()} {number}\n")
        return number * number

    return run


def test_both_processes_take_jobs_and_each_job_runs_once(workers: str, tmp_path: Path) -> None:
    trace = tmp_path / "jobs.txt"
    jobs = [concurrent.Job(_log_job(trace, n, 0.05)) for n in range(40)]
    shared = concurrent.share_jobs(jobs, first=lambda: "checked")
    assert shared.first == "checked" and shared.error is None
    assert shared.results == {n: n * n for n in range(40)}
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert sorted(int(n) for _, n in lines) == list(range(40))  # each exactly once
    pids = {pid for pid, _ in lines}
    two = workers == "2" and concurrent.workers() == 2
    assert len(pids) == (2 if two else 1)
    if not two:  # one process: in their order
        assert [int(n) for _, n in lines] == list(range(40))


def test_a_job_starts_after_the_jobs_it_waits_for_whoever_ran_them(
    workers: str, tmp_path: Path
) -> None:
    """Each 'reader' job needs the file its 'writer' job (a slow one, maybe on the other
    process) wrote; the writer renames its file into place only when done."""

    def write(n: int) -> Callable[[], None]:
        def run() -> None:
            time.sleep(0.2 if n % 2 else 0.01)
            (tmp_path / f"{n}.tmp").write_text(str(n))
            os.replace(tmp_path / f"{n}.tmp", tmp_path / f"{n}.txt")

        return run

    def read(n: int) -> Callable[[], str]:
        return lambda: (tmp_path / f"{n}.txt").read_text()

    jobs = [concurrent.Job(write(n)) for n in range(6)]
    jobs += [concurrent.Job(read(n), after=(n,)) for n in range(6)]
    shared = concurrent.share_jobs(jobs)
    assert shared.error is None
    assert [shared.results[6 + n] for n in range(6)] == [str(n) for n in range(6)]


@pytest.mark.parametrize("where", ["child", "parent"])
def test_a_failing_job_reaches_the_parent_and_stops_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    """Every job fails in one of the two processes: its exception comes back (with the
    child's traceback text when it ran there) and neither process takes another job."""
    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")
    if concurrent.workers() < 2:
        pytest.skip("one core: nothing is forked")
    trace, parent = tmp_path / "jobs.txt", os.getpid()

    def job(n: int) -> Callable[[], None]:
        def run() -> None:
            time.sleep(0.05)
            if (os.getpid() == parent) == (where == "parent"):
                raise ValueError(f"bad cell in LB row {n}")
            with trace.open("a") as fh:
                fh.write(f"{n}\n")

        return run

    shared = concurrent.share_jobs([concurrent.Job(job(n)) for n in range(40)])
    assert isinstance(shared.error, ValueError)
    assert str(shared.error) == f"bad cell in LB row {shared.failed}"
    assert isinstance(shared.error.__cause__, ChildFailed) == (where == "child")
    done = [int(n) for n in trace.read_text().split()] if trace.exists() else []
    assert shared.failed not in done and len(done) < 10  # the others were never taken
    assert set(shared.results) == set(done)


def test_one_process_stops_at_the_first_failing_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDISCFORGE_WORKERS", "1")

    def fail() -> None:
        raise ValueError("bad cell")

    jobs = [concurrent.Job(lambda: 1)] * 3 + [concurrent.Job(fail), concurrent.Job(lambda: 2)]
    shared = concurrent.share_jobs(jobs)
    assert shared.failed == 3 and isinstance(shared.error, ValueError)
    assert shared.results == {0: 1, 1: 1, 2: 1}


def test_first_runs_in_the_child_and_can_stop_the_jobs(workers: str, tmp_path: Path) -> None:
    """`first` (the build's validation) runs before the child takes a job; when `proceed`
    says no, the jobs stop (this process finishes the one it is in) and `first` comes back."""
    trace = tmp_path / "jobs.txt"
    jobs = [concurrent.Job(_log_job(trace, n, 0.2)) for n in range(30)]
    shared = concurrent.share_jobs(jobs, first=lambda: os.getpid(), proceed=lambda _pid: False)
    assert shared.error is None
    two = workers == "2" and concurrent.workers() == 2
    assert (shared.first != os.getpid()) == two
    ran = trace.read_text().splitlines() if trace.exists() else []
    assert len(ran) < 5 if two else ran == []  # one process: no job after a failed `first`


def test_an_exception_in_first_is_raised_and_leaves_no_process(monkeypatch) -> None:
    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")

    def first() -> None:
        raise KeyError("validation crashed")

    with pytest.raises(KeyError, match="validation crashed"):
        concurrent.share_jobs([concurrent.Job(lambda: time.sleep(0.1))] * 10, first=first)
    with pytest.raises(ChildProcessError):  # reaped: no child left
        os.waitpid(-1, os.WNOHANG)


def test_a_job_may_wait_only_for_jobs_before_it() -> None:
    with pytest.raises(ValueError, match="not before it"):
        concurrent.share_jobs([concurrent.Job(lambda: None, after=(0,))])


def test_jobs_done_before_are_not_run_again_and_their_waiters_start(
    workers: str, tmp_path: Path
) -> None:
    """`done` (a build's SDTM jobs run while ADaM was built): given results come back as
    they are, those jobs never run, and the jobs waiting for them run (the failing job
    with the lowest number is still the one reported)."""
    trace = tmp_path / "jobs.txt"
    jobs = [concurrent.Job(_log_job(trace, n, 0.01)) for n in range(10)]
    jobs += [concurrent.Job(_log_job(trace, 10 + n), after=(n,)) for n in range(10)]
    given = {0: "zero", 3: "three", 7: "seven"}
    shared = concurrent.share_jobs(jobs, done=given)
    assert shared.error is None
    assert shared.results == {n: given.get(n, n * n) for n in range(20)}
    ran = sorted(int(n) for _, n in (line.split() for line in trace.read_text().splitlines()))
    assert ran == [n for n in range(20) if n not in given]

    def fail() -> None:
        raise KeyError("job 5")

    jobs[5] = concurrent.Job(fail)
    shared = concurrent.share_jobs(jobs[:10], done=given)
    assert shared.failed == 5 and isinstance(shared.error, KeyError)
