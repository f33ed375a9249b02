"""Two independent parts of a build at once, one of them in a forked child process.

Once SDTM and ADaM are built, validating the datasets and writing their files read the same
frames and change none of them; each is minutes of single-core work at 10,000 subjects, and
the machine has two cores. A forked child shares the parent's memory pages copy-on-write:
the frames' buffers are only read, so they stay shared and the process tree's proportional
set size (PSS) grows only by the child's own working memory; nothing is pickled on the way
in and the child starts in milliseconds. Only the child's result comes back, pickled
through a pipe. (A thread would not do: most of the work holds the GIL.)

The child never runs the parent's clean-up: whatever happens it ends with `os._exit`, so no
`finally` of the build (removing the staging folder, releasing the lock) runs twice. An
exception in the child is re-raised in the parent (its traceback text attached); when the
parent fails or is interrupted, the child is killed and reaped before the exception goes on.

The SDTM stage uses it too: its most expensive dataset is built in a child beside the
others (cdiscforge.engine, `_Beside`).

Sequential where fork is missing (not POSIX), when the machine has one core, or when the
environment says `CDISCFORGE_WORKERS=1` (to compare, or to debug with one process): the
results are the same either way, which the tests check.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from typing import Generic, TypeVar

A = TypeVar("A")


class ChildFailed(RuntimeError):
    """The child's exception could not be sent back as itself: its type and traceback."""


def workers() -> int:
    """How many processes a build may use at once: 1 or 2 (the environment can say 1)."""
    if not hasattr(os, "fork"):
        return 1
    wanted = os.environ.get("CDISCFORGE_WORKERS", "").strip()
    if wanted == "1":
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


class Child(Generic[A]):
    """A function running in a forked child; `result()` waits for what it returned.

    Use it as a context manager: leaving the block before `result()` (an exception, Ctrl-C)
    kills and reaps the child. With `workers()` 1 the function runs at once, here.
    """

    def __init__(self, fn: Callable[[], A]) -> None:
        self._pid = 0
        self._fd = -1
        self._done: tuple | None = None
        if workers() < 2:
            try:
                self._done = ("ok", fn())
            except Exception as exc:  # raised by result(), as a forked child's would be
                self._done = ("error", exc, "")
            return
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave without running any clean-up
            os.close(read_fd)
            code = 0
            try:
                with contextlib.suppress(ValueError):  # not the main thread: leave them
                    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and ends us if it must
                payload = _dumps(("ok", fn()))
            except BaseException as exc:  # everything goes back to the parent
                payload = _dumps(("error", exc, traceback.format_exc()))
                code = 1
            try:
                with os.fdopen(write_fd, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(code)
        os.close(write_fd)
        self._pid, self._fd = pid, read_fd

    def result(self) -> A:
        """What the function returned (waiting for the child); its exception re-raised."""
        if self._done is None:
            with os.fdopen(self._fd, "rb") as pipe:
                data = pipe.read()
            self._fd = -1
            _, status = os.waitpid(self._pid, 0)
            self._pid = 0
            if not data:
                raise ChildFailed(f"the build's second process ended without a result ({status=})")
            self._done = pickle.loads(data)
        if self._done[0] == "ok":
            return self._done[1]
        _, exc, text = self._done
        if text:
            raise exc from ChildFailed(text)
        raise exc

    def kill(self) -> None:
        """End the child if it still runs, and reap it (no zombie left behind)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0

    def __enter__(self) -> Child[A]:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()


def give_back_memory() -> None:
    """Return the memory freed since to the system (Arrow's pool keeps freed blocks, glibc's
    heap its top), so a process's resident set is what it holds now. Called where a build's
    two processes are resident at once: the machine's budget is for their sum, and a
    forked child maps everything its parent held when it forked (summed RSS counts those
    pages twice until one of them lets go)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _dumps(message: tuple) -> bytes:
    """Pickle a message; an exception that does not pickle travels as ChildFailed text."""
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # an exception class with a custom __init__ may not load back
        return data
    except Exception:
        if message[0] == "error":
            exc = ChildFailed(f"{type(message[1]).__name__}: {message[1]}\n{message[2]}")
            return pickle.dumps(("error", exc, message[2]))
        raise
