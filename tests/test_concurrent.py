"""cdiscforge.concurrent: the second core's part of a build in a forked child, and what must
hold whatever the child does (its result or its exception comes back, it is never left
running, the caller's clean-up runs once)."""

from __future__ import annotations

import os
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


def test_a_failing_parent_kills_the_child_and_leaves_no_process(monkeypatch) -> None:
    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")
    if concurrent.workers() < 2:
        pytest.skip("one core: nothing is forked")
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)

    def boom() -> None:
        raise KeyError("parent failed")

    start = time.monotonic()
    with pytest.raises(KeyError):
        run_beside(lambda: time.sleep(60), boom)
    assert time.monotonic() - start < 30  # the sleeping child did not hold us up
    with pytest.raises(ChildProcessError):  # killed and reaped: no child, not even a zombie
        os.waitpid(forked[0], os.WNOHANG)


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
