"""Two independent parts of a build at once, one of them in a forked child process; or a
list of jobs shared by the two processes, each taking the next one when it is free.

Once SDTM and ADaM are built, validating the datasets and writing their files read the same
frames and change none of them; each is minutes of single-core work at 10,000 subjects, and
the machine has two cores. A forked child shares the parent's memory pages copy-on-write:
the frames' buffers are only read, so they stay shared and the process tree's proportional
set size (PSS) grows only by the child's own working memory; nothing is pickled on the way
in and the child starts in milliseconds. Only the child's result comes back, pickled
through a pipe, its arrays written into an in-memory file the parent maps (`_dumps`).
(A thread would not do: most of the work holds the GIL.)

The child never runs the parent's clean-up: whatever happens it ends with `os._exit`, so no
`finally` of the build (removing the staging folder, releasing the lock) runs twice. An
exception in the child is re-raised in the parent (its traceback text attached); when the
parent fails or is interrupted, the child is killed and reaped before the exception goes on.

The SDTM stage uses it too: its most expensive dataset is built in a child beside the
others (cdiscforge.engine, `_Beside`).

Sequential where fork is missing (not POSIX), when the machine has one core, or when the
environment says `CDISCFORGE_WORKERS=1` (to compare, or to debug with one process): the
results are the same either way, which the tests check.

`share_jobs` balances the two cores: the writing of a build is many jobs of very different
sizes (a 2 GB Dataset-JSON file, a 30 kB XPT), and a fixed split leaves one core idle while
the other finishes. The job numbers are written, in the caller's order (largest first), into
a pipe before the fork: both processes read the next number from it when they are free (a
pipe read of one 4-byte record is atomic, so no job is taken twice: a work-stealing queue
without locks). A job may need others done first (a cross-check reads the files other jobs
write): each process announces the jobs it finished on a pipe to the other, and waits there
for the ones it needs. Only jobs earlier in the list may be waited for, so the earliest job
not done can always run and the two never wait for each other.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import struct
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

A = TypeVar("A")
F = TypeVar("F")
R = TypeVar("R")


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


def threaded(fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
    """`[fn(item) for item in items]` on `workers()` threads, in the items' order whatever
    the timing (the first exception, in that order, is raised).

    For work that lets go of the GIL (Arrow's compute kernels: encoding the columns of a
    raw export with millions of rows), where a thread costs nothing to start and shares the
    data without copy-on-write. `fn` must only compute: it must not report errors
    (errors.collecting's collector belongs to the calling thread) nor log. The threads
    are joined before this returns, so none is alive when a build forks."""
    if workers() < 2 or len(items) < 2:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers()) as pool:
        return list(pool.map(fn, items))


class Child(Generic[A]):
    """A function running in a forked child; `result()` waits for what it returned.

    Use it as a context manager: leaving the block before `result()` (an exception, Ctrl-C)
    kills and reaps the child. With `workers()` 1 the function runs at once, here.
    """

    def __init__(self, fn: Callable[[], A]) -> None:
        self._pid = 0
        self._fd = -1
        self._shared = -1
        self._done: tuple | None = None
        if workers() < 2:
            try:
                self._done = ("ok", fn())
            except Exception as exc:  # raised by result(), as a forked child's would be
                self._done = ("error", exc, "")
            return
        # Garbage the parent still holds (a cycle around a replaced frame) would be inherited
        # and, freed in the parent only after the fork, stay resident in the child: the
        # tree's RSS then counts it twice. Collected now, neither has it.
        gc.collect()
        give_back_memory()
        read_fd, write_fd = os.pipe()
        self._shared = _shared_file()
        # Ctrl-C and SIGTERM wait while forking: a handler run inside os.fork's at-fork hooks
        # (logging's) raises where Python can only print the exception and go on, so the
        # build would not stop; held until the child is known, they are raised below. This
        # thread blocks them, but the kernel gives a signal sent to the process to any
        # thread that does not (Arrow's, a pool's), and Python then runs the handler in this
        # thread wherever it is: so the handlers are also swapped for one that only notes
        # the signal, and a noted one is raised again below.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
        noted: list[int] = []
        handlers = _note_signals(noted)
        try:
            pid = os.fork()
        except BaseException:
            _restore_signals(handlers)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        if pid == 0:  # the child: compute, send, and leave without running any clean-up
            os.close(read_fd)
            code = 0
            try:
                with contextlib.suppress(ValueError):  # not the main thread: leave them
                    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and ends us if it must
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
                payload = _dumps(("ok", fn()), self._shared)
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
        try:
            _restore_signals(handlers)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held signal is raised here
            for signum in dict.fromkeys(noted):  # one another thread took, once each
                if handlers.get(signum) == signal.SIG_DFL:
                    self.kill()  # the signal ends this process: not the child left behind
                signal.raise_signal(signum)
        except BaseException:
            self.kill()  # __exit__ will not run: the constructor did not return
            raise

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
            try:
                self._done = _loads(data, self._shared)
            except Exception as exc:  # a result holding what does not load back
                raise ChildFailed(
                    "the result of the build's second process did not load back: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            finally:  # what was mapped stays mapped while the result holds it
                if self._shared >= 0:
                    os.close(self._shared)
                    self._shared = -1
        if self._done[0] == "ok":
            return self._done[1]
        _, exc, text = self._done
        if text:
            raise exc from ChildFailed(text)
        raise exc

    def kill(self) -> None:
        """End the child if it still runs, and reap it (no zombie left behind)."""
        if self._shared >= 0:
            os.close(self._shared)
            self._shared = -1
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


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# Free memory at the top of the heap kept for the next allocations (malloc_trim, in
# give_back_memory, still returns all of it where the build asks).
_KEEP_FREE = 1 << 30


def reuse_memory() -> None:
    """Serve this process's allocations from memory it freed before, not from new pages.

    For a forked child doing one heavy build (SDTM's MK: ~9M records, each step a few
    temporaries of 70 MB): numpy's large arrays are each mapped anew by glibc (above its mmap
    threshold) and unmapped when freed, and Arrow's pool (mimalloc) returns its pages to
    the system too, so every temporary is memory the kernel must zero again (transparent
    huge pages here). Measured at 10,000 subjects in the build's child: 4,900 huge-page
    faults, sys 5.3-5.9 s of ~11 s CPU; with glibc's heap only (no mmap, the top kept) and
    Arrow's buffers from the same heap (its system pool), ~800 faults, sys 2.3-4.0 s (user
    time unchanged, peak RSS the same: the heap is reused, not grown). Not for the parent,
    which lives through the whole build (its heap would keep each stage's peak)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE)


_STOPPING = {signal.SIGINT, signal.SIGTERM}


def _note_signals(noted: list[int]) -> dict[int, Any]:
    """Replace the SIGINT and SIGTERM handlers with one appending the signal to `noted`;
    returns the handlers replaced. Off the main thread it replaces none: only the main
    thread may set a handler, and Python runs handlers only there."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {
        signum: signal.signal(signum, lambda n, _f: noted.append(n))
        for signum in sorted(_STOPPING)
        if signal.getsignal(signum) is not None  # set outside Python: cannot be put back
    }


def _restore_signals(handlers: dict[int, Any]) -> None:
    """Put back the handlers `_note_signals` replaced."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


# A result's arrays start at a multiple of this in the shared file (numpy's and Arrow's
# alignment for vectorised access).
_ALIGN = 64


def _shared_file() -> int:
    """An anonymous in-memory file both processes hold (the child writes a result's arrays
    into it, the parent maps them): -1 where there is none (not Linux)."""
    if not hasattr(os, "memfd_create"):
        return -1
    try:
        return os.memfd_create("cdiscforge-result", os.MFD_CLOEXEC)
    except OSError:
        return -1


def _dumps(message: tuple, shared: int = -1) -> bytes:
    """Pickle a message; an exception that does not pickle travels as ChildFailed text.

    A result's arrays (pickle protocol 5's out-of-band buffers: numpy's and Arrow's), when
    there is a `shared` file, are written into it and the pickle names where: the parent
    maps them (`_loads`) instead of reading them through the pipe and copying them out of
    the pickle (MK at 10,000 subjects: 464 MiB read, then copied, while the parent waits;
    written into the file, the child need not wait for the parent to read, and the parent
    maps its pages without a copy)."""
    if message[0] == "ok" and shared >= 0:
        buffers: list[pickle.PickleBuffer] = []
        data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        places = []
        offset = 0
        with os.fdopen(os.dup(shared), "wb") as out:
            for buffer in buffers:
                raw = buffer.raw()
                pad = -offset % _ALIGN
                out.write(b"\0" * pad)
                out.write(raw)
                places.append((offset + pad, raw.nbytes))
                offset += pad + raw.nbytes
        return pickle.dumps(("shared", data, places, offset), protocol=pickle.HIGHEST_PROTOCOL)
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if message[0] == "error":  # an exception class with a custom __init__ may not load
            pickle.loads(data)  # back; a result is not loaded twice (MK at 10,000 subjects:
        return data  # 0.3 s), the parent names one that does not load (Child.result)
    except Exception:
        if message[0] == "error":
            exc = ChildFailed(f"{type(message[1]).__name__}: {message[1]}\n{message[2]}")
            return pickle.dumps(("error", exc, message[2]))
        raise


def _loads(data: bytes, shared: int) -> tuple:
    """The message `_dumps` made: its arrays, if in the shared file, mapped from it
    (privately: a write to one copies that page only, the child's file is not changed)."""
    message = pickle.loads(data)
    if message[0] != "shared":
        return message
    import mmap

    _, data, places, size = message
    view = memoryview(mmap.mmap(shared, size, flags=mmap.MAP_PRIVATE)) if size else memoryview(b"")
    return pickle.loads(data, buffers=[view[start : start + n] for start, n in places])


# ------------------------------------------------------------------------- a shared job queue

_RECORD = struct.Struct("<I")  # one job number: written and read whole (< PIPE_BUF)
# The queue is filled before the fork, and a process may announce every job it did before the
# other reads one: all must fit a pipe without a reader, one page (4 KiB) when the system
# limits the user's pipe pages (fs.pipe-user-pages-soft), 64 KiB otherwise.
_PIPE_RECORDS = 1024


@dataclass(frozen=True)
class Job:
    """One piece of shared work: `run()` returns what the caller gets back for it (pickled
    on the way when the child ran it). It starts once the jobs `after` (numbers of jobs
    before it in the list) are done, by either process."""

    run: Callable[[], Any]
    after: tuple[int, ...] = ()


@dataclass
class Shared(Generic[F]):
    """What `share_jobs` did: `first`'s result, each job's result by number (every job when
    nothing failed), and the exception of the failing job with the lowest number, if any (the
    one a single process, running the jobs in order, would have stopped at)."""

    first: F | None = None
    results: dict[int, Any] = field(default_factory=dict)
    error: Exception | None = None
    failed: int | None = None  # the number of the job that raised `error`


class _Stopped(Exception):
    """The other process stopped (a failure, or `first` said not to go on) before it
    finished a job this one waits for."""


def share_jobs(
    jobs: Sequence[Job],
    *,
    first: Callable[[], F] | None = None,
    proceed: Callable[[F], bool] = lambda _found: True,
    done: Mapping[int, Any] | None = None,
) -> Shared[F]:
    """Run `jobs` on two processes, each taking the next job in their order when it is free.

    `done` holds the results of jobs already run (by number; a build runs some of its
    writing while it still builds ADaM, `cdiscforge.build`): they are not run again, and
    count as done for the jobs that wait for them.

    `first`, when given, runs in the child before it takes any job (the build validates
    there), and the child takes jobs only if `proceed(first())`; otherwise it empties the
    queue, so this process stops after the job it is doing. A failing job empties the queue
    too: both processes stop, and the exception comes back in `Shared.error` (the caller
    decides what comes first). With one process (`workers()`), `first` and then, if it
    proceeds, the jobs run here in their order, stopping at the first failure.
    """
    for number, job in enumerate(jobs):
        if any(not 0 <= before < number for before in job.after):
            raise ValueError(f"job {number} waits for a job that is not before it: {job.after}")
    done = dict(done or {})
    if workers() < 2:
        return _alone(jobs, first, proceed, done)
    if len(jobs) > _PIPE_RECORDS:
        raise ValueError(f"{len(jobs)} jobs: at most {_PIPE_RECORDS} fit the queue")
    queue, fill = os.pipe()
    try:
        os.write(fill, b"".join(_RECORD.pack(n) for n in range(len(jobs)) if n not in done))
    finally:
        os.close(fill)
    # Not blocking: an empty queue reads as such even while another fork of this process (a
    # thread's build, `cdiscforge build-many`) still holds the end it was filled from.
    os.set_blocking(queue, False)
    to_parent, to_child = os.pipe(), os.pipe()  # the jobs each process finished

    def in_child() -> tuple[Any, dict[int, Any], tuple[int, Exception, str] | None]:
        os.close(to_parent[0])  # the parent's ends: without them closed here, the pipe from
        os.close(to_child[1])  # the parent would never end while we wait on it
        runner = _Runner(jobs, queue, tell=to_parent[1], hear=to_child[0], done=done)
        try:
            found = first() if first is not None else None
            if first is not None and not proceed(found):  # type: ignore[arg-type]
                _drain(queue)
                return found, {}, None
            runner.run()
        except BaseException:
            _drain(queue)  # the parent stops too, and hears why from the result
            raise
        finally:
            runner.stop()  # before the result goes back: a parent waiting for a job wakes
        failure = runner.failure
        if failure is not None:  # sent back as itself if it pickles, else as its text
            number, exc, text = failure
            failure = (number, _portable(exc, text), text)
        return found, runner.results, failure

    shared: Shared[F] = Shared()
    runner = _Runner(jobs, queue, tell=to_child[1], hear=to_parent[0], done=done)
    theirs_ends = [to_parent[1], to_child[0]]
    try:
        with Child(in_child) as child:
            while theirs_ends:  # the child's ends
                os.close(theirs_ends.pop())
            try:
                runner.run()
            finally:
                runner.stop()
            shared.first, theirs, failure = child.result()
    finally:
        runner.stop()  # if the fork itself failed
        for fd in (queue, to_parent[0], *theirs_ends):
            os.close(fd)
    shared.results = {**done, **runner.results, **theirs}
    failures = [f for f in (runner.failure, failure) if f is not None]
    if failures:
        number, exc, text = min(failures, key=lambda f: f[0])
        if failure is not None and number == failure[0] and exc.__cause__ is None:
            exc.__cause__ = ChildFailed(text)  # the child's traceback, as Child.result does
        shared.failed, shared.error = number, exc
    return shared


def _alone(
    jobs: Sequence[Job],
    first: Callable[[], F] | None,
    proceed: Callable[[F], bool],
    done: dict[int, Any],
) -> Shared[F]:
    """`share_jobs` in one process: the same results, in the same order."""
    shared: Shared[F] = Shared()
    if first is not None:
        shared.first = first()
        if not proceed(shared.first):
            return shared
    for number, job in enumerate(jobs):  # in order: what a job waits for is done
        try:
            shared.results[number] = done[number] if number in done else job.run()
        except Exception as exc:
            shared.failed, shared.error = number, exc
            break
    return shared


class _Runner:
    """One process's side of `share_jobs`: takes jobs until the queue is empty."""

    def __init__(
        self, jobs: Sequence[Job], queue: int, *, tell: int, hear: int, done: Iterable[int] = ()
    ) -> None:
        self.jobs, self.queue, self.tell, self.hear = jobs, queue, tell, hear
        self.results: dict[int, Any] = {}
        self.failure: tuple[int, Exception, str] | None = None
        self.done: set[int] = set(done)  # by either process (or before: share_jobs' `done`)

    def run(self) -> None:
        while data := _take(self.queue):
            (number,) = _RECORD.unpack(data)  # a whole record: see the module docstring
            job = self.jobs[number]
            try:
                self.wait(job.after)
                self.results[number] = job.run()
            except _Stopped:  # the other side failed or stopped: its result says why
                _drain(self.queue)
                return
            except Exception as exc:
                self.failure = (number, exc, traceback.format_exc())
                _drain(self.queue)  # the other process stops after its current job
                return
            self.done.add(number)
            with contextlib.suppress(BrokenPipeError):  # the other one has finished: no need
                os.write(self.tell, _RECORD.pack(number))

    def wait(self, numbers: Iterable[int]) -> None:
        """Return once the jobs `numbers` are done (by this process, or heard of)."""
        for number in numbers:
            while number not in self.done:
                data = _read_record(self.hear)
                if data is None:
                    raise _Stopped
                self.done.add(_RECORD.unpack(data)[0])

    def stop(self) -> None:
        """Announce no more: the other process, if it waits for one of our jobs, stops. (What
        it announces is still read, until its end: closing that pipe early would make its
        next announcement fail.)"""
        if self.tell >= 0:
            os.close(self.tell)
            self.tell = -1


def _read_record(fd: int) -> bytes | None:
    """One whole record from a pipe; None at its end (the writer closed it)."""
    data = b""
    while len(data) < _RECORD.size:
        more = os.read(fd, _RECORD.size - len(data))
        if not more:
            return None
        data += more
    return data


def _take(queue: int, size: int = _RECORD.size) -> bytes:
    """The next `size` bytes of the queue (one job number), b"" when it is empty."""
    try:
        return os.read(queue, size)
    except BlockingIOError:
        return b""


def _drain(queue: int) -> None:
    """Take every job still in the queue, so that neither process starts another."""
    while _take(queue, 4096):  # a multiple of the record: never half a job number
        pass


def _portable(exc: Exception, text: str) -> Exception:
    """`exc` if it pickles and loads back, else a ChildFailed with its type and text."""
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
        return exc
    except Exception:
        return ChildFailed(f"{type(exc).__name__}: {exc}\n{text}")
