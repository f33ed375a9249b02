"""Output folders cdiscforge owns, and only those: manifest, refusals, lock, staged swap, signals.

A submission team keeps notes, drafts and other tools' files next to a build's output. The
one rule here is that cdiscforge never deletes or overwrites a file it did not write, and
keeps the last good package until a better one replaces it.

**Ownership.** Every build writes `cdiscforge-manifest.json` into its output folder: each
file it wrote with size and sha256, the tool version and the hashes of the spec files and
raw inputs. A later build replaces exactly the files that manifest lists and nothing else;
any other file in the folder is the user's and stays (the build log names it). A non-empty
folder without a manifest is refused, as are folders that are or contain the spec folder,
the raw folder, the current project (pyproject.toml / .git) or the user's home. There is
no `--force`: a user who wants a foreign folder cleared does it with their own tools.
A failed validation publishes its report and log into `<out>/failed/`, which carries its
own manifest (so the good package and its manifest stay byte-identical) and is removed by
the next successful build.

**The swap, and why it is safe.** The new files are built in a staging folder beside the
output folder (same file system, so every move below is a `rename(2)`, atomic per file):

1. before anything moves, the manifest in the folder is replaced (atomically) by an
   *intent* manifest listing old and new files, so that even a `kill -9` mid-swap leaves
   every file we touched owned by a manifest: the next build replaces them, never
   mistaking them for the user's;
2. each file the old manifest lists is moved to a backup folder beside the output folder;
3. each new file is moved from staging into place; no new path may land on a file the
   old manifest does not list (that is a user's file: the build refuses, changing nothing);
4. the new manifest is renamed into place last: the commit point;
5. the backup, emptied directories and staging are removed.

Any exception in steps 1-4 rolls back: new files are removed, backed-up files are moved
back and the old manifest restored, so the folder is byte-identical to before. (Atomic
here means all or nothing for the build; a reader opening files during the milliseconds
of the renames may see some old and some new files, and the intent manifest says so.)
Publishing whole subfolders instead would be no more atomic across the folder and would
have to move a user's files kept inside `sdtm/`. SIGINT and
SIGTERM are blocked while the swap and the clean-up run (a signal arriving then is
delivered right after), so a Ctrl-C cannot stop a swap half-way.

**Signals.** `handle_signals()` (installed by the CLI) turns SIGINT and SIGTERM into
`Interrupted`, a BaseException that unwinds through every `finally`, so the staging folder
and the lock are removed and the process exits 130 / 143.

**One build per folder.** A lock file beside the output folder, `.<name>.cdiscforge.lock`,
holds the pid and start time of the build owning it, under an exclusive `flock(2)`. The
kernel drops a flock when its holder dies, even by SIGKILL, so a lock whose flock is free
is stale whatever pid it names (pid reuse cannot fool it): it is taken over and logged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdiscforge import __version__
from cdiscforge.errors import CdiscforgeError

MANIFEST = "cdiscforge-manifest.json"
FAILED = "failed"
# Files a build owns whose content varies run to run (seconds): listed by name, not hashed,
# so the manifest itself stays byte-identical between reruns.
RUN_FILES = ("timings.json",)
_FORMAT = 1
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_WHAT_TO_DO = (
    "cdiscforge never deletes or overwrites files it did not write, so nothing was changed. "
    "Give --out a new or empty folder, or a folder an earlier cdiscforge build wrote "
    "(the default is outputs/<study>)."
)


class OutputRefused(CdiscforgeError):
    """The output folder is not one cdiscforge may write into (exit 2, nothing changed)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: a BaseException so no `except Exception` swallows it on the way out."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signame = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.published = False
        super().__init__(f"interrupted by {self.signame}")


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` for the duration (main thread only)."""

    def _raise(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    try:
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, _raise)
    except ValueError:  # not the main thread (an embedding application): leave its handlers
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Block SIGINT/SIGTERM while a swap or clean-up runs; pending ones arrive on exit."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# --------------------------------------------------------------------------- preallocation


@functools.cache
def _fallocate() -> Any:
    """libc's fallocate(2), or None where there is none (not glibc/Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.fallocate
    except (OSError, AttributeError, TypeError):  # (TypeError: no CDLL(None) on Windows)
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return call


def preallocate(fd: int, size: int) -> bool:
    """Reserve disk blocks for the first `size` bytes of the file open as `fd`, which is
    about to be written that far; whether it did. The file's size becomes at least `size`
    (fallocate(2) mode 0: the reserved range reads as zeros until written), so a writer
    that stops short truncates to what it wrote.

    Why: on ext4 a file written into blocks reserved beforehand costs the writing process
    about half the kernel time of one whose blocks are allocated page by page as it grows
    (2 GB: 0.2 s of system time against 0.35 to 1.2 s here). No bytes change. fallocate(2)
    itself, not `os.posix_fallocate`: where a file system cannot reserve, glibc's stand-in
    writes a zero into every block, which costs more than it saves; here any refusal
    (unsupported, no space) only means no reservation, and the writing then fails or
    succeeds as it would have."""
    call = _fallocate()
    if call is None or size <= 0:
        return False
    return call(fd, 0, 0, size) == 0


# --------------------------------------------------------------------------- manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: list[Path]) -> list[str]:
    """sha256 of each file, in order, on the build's threads (cdiscforge.concurrent.threaded):
    hashlib lets go of the GIL while it hashes a block, so a 10,000-subject package (~6 GB)
    is hashed on both cores."""
    from cdiscforge.concurrent import threaded

    biggest_first = sorted(range(len(paths)), key=lambda i: -paths[i].lstat().st_size)
    found = threaded(sha256_file, [paths[i] for i in biggest_first])
    digests = dict(zip(biggest_first, found, strict=True))
    return [digests[i] for i in range(len(paths))]


def _walk_files(root: Path) -> list[str]:
    """Relative posix paths of every file and symlink under root (symlinked dirs not followed)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in filenames:
            found.append((here / name).relative_to(root).as_posix())
        for name in list(dirnames):
            if (here / name).is_symlink():
                found.append((here / name).relative_to(root).as_posix())
    return sorted(found)


@dataclass
class Manifest:
    """What one build wrote into one folder (paths relative to that folder)."""

    files: dict[str, dict[str, Any]]
    run_files: list[str] = field(default_factory=list)

    @property
    def paths(self) -> set[str]:
        return set(self.files) | set(self.run_files)

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The manifest in `folder`, None if there is none; a broken one is refused."""
        path = folder / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = {str(k): dict(v) for k, v in data["files"].items()}
            run_files = [str(p) for p in data.get("run_files", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OutputRefused(
                f"refusing to build into {folder}: its {MANIFEST} cannot be read ({exc}), so "
                f"cdiscforge cannot tell its own files from yours. {_WHAT_TO_DO}"
            ) from None
        for rel in [*files, *run_files]:
            p = Path(rel)
            if p.is_absolute() or ".." in p.parts or rel in ("", ".") or rel == MANIFEST:
                raise OutputRefused(
                    f"refusing to build into {folder}: its {MANIFEST} lists {rel!r}, which is "
                    f"not a file inside the folder. {_WHAT_TO_DO}"
                )
        return cls(files, run_files)


def tree_hashes(root: Path, files: list[Path] | None = None) -> dict[str, str]:
    """sha256 of `files` (default: every file under root), keyed by path relative to root."""
    paths = files if files is not None else [root / p for p in _walk_files(root)]
    out: dict[str, str] = {}
    for path, digest in zip(paths, sha256_files(paths), strict=True):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        out[rel] = digest
    return dict(sorted(out.items()))


def write_manifest(
    folder: Path, *, inputs: dict[str, Any], known: dict[str, tuple[int, str]] | None = None
) -> Path:
    """Write `folder`'s manifest: every file under it with size and sha256 (run files by name).

    `known` gives (size, sha256) of files hashed already (relative paths): the build hashes
    its large files as soon as they are written, on whichever core is free, and vouches that
    nothing wrote them since; one whose size differs now is hashed again, and the rest are
    hashed here. No clock, no absolute path: two builds of the same inputs write the same
    bytes.
    """
    run_files: list[str] = []
    hashed: list[str] = []
    for rel in _walk_files(folder):
        if rel == MANIFEST:
            continue
        (run_files if rel in RUN_FILES else hashed).append(rel)
    sizes = {rel: (folder / rel).lstat().st_size for rel in hashed}
    known = {rel: known[rel][1] for rel in hashed if (known or {}).get(rel, (-1,))[0] == sizes[rel]}
    todo = [rel for rel in hashed if rel not in known]
    found = dict(zip(todo, sha256_files([folder / rel for rel in todo]), strict=True))
    files: dict[str, dict[str, Any]] = {
        rel: {"size": sizes[rel], "sha256": known.get(rel) or found[rel]} for rel in hashed
    }
    data = {
        "cdiscforge_manifest": _FORMAT,
        "tool": {"name": "cdiscforge", "version": __version__},
        "inputs": inputs,
        "files": files,
        "run_files": run_files,
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- where we may write


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or inner.is_relative_to(outer)


def _project_root(cwd: Path) -> Path | None:
    for folder in (cwd, *cwd.parents):
        if (folder / "pyproject.toml").exists() or (folder / ".git").exists():
            return folder
    return None


def check_target(
    out_dir: Path,
    *,
    spec_dir: Path,
    raw_dir: Path | None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> Path:
    """Refuse folders a build must never write into; return the resolved output folder.

    Looks only, changes nothing. A refusal says why and what to do, in one message.
    """
    root = out_dir.expanduser().resolve()
    cwd = (cwd or Path.cwd()).resolve()
    home = (home or Path.home()).resolve()

    def refuse(why: str) -> OutputRefused:
        return OutputRefused(f"refusing to build into {root}: {why}. {_WHAT_TO_DO}")

    def is_or_contains(what: Path) -> str:
        return "is" if root == what else "contains"

    if _contains(root, home):
        raise refuse(f"it {is_or_contains(home)} your home folder {home}")
    project = _project_root(cwd)
    if project is not None and _contains(root, project):
        raise refuse(
            f"it {is_or_contains(project)} the current project folder {project} "
            "(a folder holding pyproject.toml or .git)"
        )
    for marker in ("pyproject.toml", ".git"):
        if (root / marker).exists():
            raise refuse(f"it is a project folder (it holds {marker})")
    spec = spec_dir.expanduser().resolve()
    if _contains(root, spec):
        raise refuse(f"it {is_or_contains(spec)} the spec folder {spec}")
    if raw_dir is not None:
        raw = raw_dir.expanduser().resolve()
        if _contains(root, raw):
            raise refuse(f"it {is_or_contains(raw)} the raw export folder {raw}")
    if root.exists() and not root.is_dir():
        raise refuse("it is a file, not a folder")
    return root


def _is_specs(folder: Path) -> bool:
    """A study's spec folder (holding study.yaml), or a project's specs/ folder of them (a
    checkout's, which an installed wheel does not know as its bundled specs)."""
    if (folder / "study.yaml").is_file():
        return True
    if folder.name != "specs" or _project_root(folder.parent) != folder.parent:
        return False
    try:
        return any((d / "study.yaml").is_file() for d in folder.iterdir() if d.is_dir())
    except OSError:
        return False


def report_target(
    report: Path | None, data: Path, *, cwd: Path | None = None, home: Path | None = None
) -> Path:
    """Where `cdiscforge validate` writes its report; refuse folders it must never write into.

    Default: `validation-report/<name of data>` in the current folder, except inside a
    project (a folder holding pyproject.toml or .git, e.g. a cdiscforge checkout), where it is
    `<project>/outputs/validation-report/<name>`: the build's own output area, never the
    source tree. Refused (exit 2, nothing written): the data folder itself or a folder
    inside or around it, the home or project folder itself (or one containing it), and any
    folder inside a Python package or the bundled specs (the source tree)."""
    from cdiscforge.studies import specs_root

    cwd = (cwd or Path.cwd()).resolve()
    home = (home or Path.home()).resolve()
    data = data.expanduser().resolve()
    project = _project_root(cwd)
    if report is None:
        base = project / "outputs" if project is not None else cwd
        report = base / "validation-report" / data.name
    root = report.expanduser()
    root = (cwd / root if not root.is_absolute() else root).resolve()

    def refuse(why: str) -> OutputRefused:
        return OutputRefused(
            f"refusing to write the validation report into {root}: {why}; nothing was "
            "written. Give --report a folder outside the data and the source tree."
        )

    if _contains(data, root) or _contains(root, data):
        raise refuse(f"it is inside or around the folder being validated {data}")
    if _contains(root, home):
        raise refuse(f"it is or contains your home folder {home}")
    if project is not None and _contains(root, project):
        raise refuse(f"it is or contains the project folder {project}")
    specs = specs_root().resolve()
    if _contains(specs, root):
        raise refuse(f"it is inside the bundled specs {specs}")
    stop = project.parent if project is not None else None
    for folder in (root, *root.parents):
        if folder == stop:
            break
        if (folder / "__init__.py").is_file():
            raise refuse(f"it is inside the Python package {folder} (the source tree)")
        if _is_specs(folder):
            raise refuse(f"it is inside the study specs {folder}")
    if root.exists() and not root.is_dir():
        raise refuse("it is a file, not a folder")
    return root


def check_targets_apart(targets: dict[str, Path], inputs: dict[str, list[Path]]) -> list[str]:
    """Problems of several builds' output folders taken together (`build-many`), one line
    each: two builds given the same folder, or one inside another's (they would write over
    each other), or one that is or contains another build's spec or raw folder. Each
    folder alone is still judged by `check_target`; paths are compared resolved.
    """
    resolved = {name: path.expanduser().resolve() for name, path in targets.items()}
    problems = []
    names = list(resolved)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if resolved[a] == resolved[b]:
                problems.append(f"{a} and {b} have the same output folder {resolved[a]}")
            elif _contains(resolved[a], resolved[b]) or _contains(resolved[b], resolved[a]):
                outer, inner = (a, b) if _contains(resolved[a], resolved[b]) else (b, a)
                problems.append(
                    f"the output folder of {inner} ({resolved[inner]}) is inside that of "
                    f"{outer} ({resolved[outer]})"
                )
    for a in names:
        for b, folders in inputs.items():
            for folder in folders:
                if a != b and _contains(resolved[a], folder.expanduser().resolve()):
                    problems.append(
                        f"the output folder of {a} ({resolved[a]}) is or contains an input "
                        f"folder of {b} ({folder.expanduser().resolve()})"
                    )
    return problems


@dataclass
class OutputState:
    """An output folder as found: its manifests and the files no manifest lists (the user's)."""

    root: Path
    manifest: Manifest | None
    failed: Manifest | None
    foreign: list[str]

    @property
    def owned_dirs(self) -> set[Path]:
        """Folders holding files we own: the swap renames inside each of them."""
        dirs = {self.root} if self.root.exists() else set()
        for base, man in ((self.root, self.manifest), (self.root / FAILED, self.failed)):
            if man is not None:
                dirs.add(base)
                dirs |= {(base / p).parent for p in man.paths if (base / p).parent.is_dir()}
        return dirs


def inspect(root: Path) -> OutputState:
    """Read the folder's manifests; refuse a non-empty folder no cdiscforge build wrote."""
    if not root.exists():
        return OutputState(root, None, None, [])
    manifest = Manifest.read(root)
    failed = Manifest.read(root / FAILED) if (root / FAILED).is_dir() else None
    owned = set(manifest.paths if manifest else ()) | {MANIFEST}
    if failed is not None:
        owned |= {f"{FAILED}/{p}" for p in (*failed.paths, MANIFEST)}
    foreign = [p for p in _walk_files(root) if p not in owned]
    if manifest is None and failed is None and any(root.iterdir()):
        entries = foreign or sorted(p.name for p in root.iterdir())
        shown = ", ".join(entries[:5]) + (
            f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        )
        raise OutputRefused(
            f"refusing to build into {root}: it is not empty ({shown}) and holds no "
            f"{MANIFEST}, so no cdiscforge build wrote it. {_WHAT_TO_DO} (A folder written by a "
            "cdiscforge older than the manifest has none: if that is all it holds, delete it "
            "yourself.)"
        )
    return OutputState(root, manifest, failed, foreign)


def check_writable(state: OutputState) -> None:
    """Find a read-only output folder or parent now, before a minute of building."""
    root = state.root
    existing = root.parent
    while not existing.exists():
        existing = existing.parent
    for folder in sorted({existing, *state.owned_dirs}):
        if not os.access(folder, os.W_OK | os.X_OK):
            if folder == root:
                where = f"the output folder {root} is read-only"
            elif root.is_relative_to(folder):
                where = (
                    f"{folder} is read-only, and the output folder {root.name}, its staging "
                    "folder and its lock go there"
                )
            else:
                where = f"{folder} inside the output folder {root} is read-only"
            raise OutputRefused(
                f"cannot write the output: {where}. Nothing was built or changed. Make it "
                "writable, or give --out another folder."
            )


# --------------------------------------------------------------------------- lock


def lock_path(root: Path) -> Path:
    return root.parent / f".{root.name}.cdiscforge.lock"


class OutputLock:
    """One build per output folder (see the module docstring); `notes` says what happened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = lock_path(root)
        self.notes: list[str] = []
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = _read_holder(self.path)
                for _ in range(20):  # the holder may be between its flock and its write
                    if holder:
                        break
                    time.sleep(0.05)
                    holder = _read_holder(self.path)
                raise OutputRefused(
                    f"another cdiscforge build (pid {holder.get('pid', '?')}, started "
                    f"{holder.get('started', '?')}) is writing into {self.root}; wait for it to "
                    f"finish or give --out another folder. Nothing was changed. "
                    f"Lock: {self.path}"
                ) from None
            # The holder may have removed the file between our open and our flock: then we
            # hold a lock on a deleted file, so start again on the current one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        stale = _read_holder(self.path)
        if stale:
            self.notes.append(
                f"took over the stale lock {self.path} of build pid {stale.get('pid', '?')} "
                f"(started {stale.get('started', '?')}), which is no longer running"
            )
        record = {
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "out": str(self.root),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is None:
            return
        with signals_deferred():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # unlink first, while we still hold the flock
            os.close(self._fd)
            self._fd = None


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- staging and swap


def staging_path(root: Path) -> Path:
    return root.parent / f".{root.name}.staging-{os.getpid()}"


def clear_leftovers(root: Path) -> list[str]:
    """Under the lock: remove staging folders of builds killed (SIGKILL, power loss) before
    they could clean up, and point at backups a swap killed half-way left. Returns notes.

    Only hidden folders named by our own pattern for this output folder are touched; a
    staging folder holds nothing but a build's own output. A backup may hold the only copy
    of a previous file, so it is reported, never removed.
    """
    notes: list[str] = []
    for kind in ("staging", "backup", "failed-backup"):
        prefix = f".{root.name}.{kind}-"
        for path in sorted(root.parent.glob(glob.escape(prefix) + "*")):
            if not (path.name[len(prefix) :].isdigit() and path.is_dir()):
                continue
            if kind == "staging":
                remove_tree(path)
                notes.append(f"removed {path}, left by an earlier build that was killed")
            else:
                notes.append(
                    f"{path} was left by a build killed while publishing: it holds previous "
                    "versions of files cdiscforge wrote; delete it once you do not need them"
                )
    return notes


def _backup_path(target: Path) -> Path:
    return target.parent / f".{target.name}.backup-{os.getpid()}"


def remove_tree(path: Path) -> None:
    """Remove a folder of ours (staging, backup) even when a signal arrives meanwhile."""
    with signals_deferred():
        shutil.rmtree(path, ignore_errors=True)


def _real_parents_ok(target: Path, rel: str) -> bool:
    """True when every folder between target and target/rel is a real folder or absent."""
    here = target
    for part in Path(rel).parts[:-1]:
        here = here / part
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            return False
    return True


def swap_in(
    staged: Path, target: Path, old: Manifest | None, *, backup: Path | None = None
) -> list[str]:
    """Replace the files `old` lists in `target` with the files in `staged` (module docstring).

    `staged` holds the new files and their manifest. Returns the paths of files `old`
    listed that were replaced or removed. Raises OutputRefused, changing nothing, when a
    new file would land on a file no manifest lists.
    """
    new_paths = [p for p in _walk_files(staged) if p != MANIFEST]
    old_paths = sorted(old.paths) if old else []
    old_set = set(old_paths)
    for rel in new_paths:
        dest = target / rel
        if not _real_parents_ok(target, rel) or (
            (dest.exists() or dest.is_symlink()) and (rel not in old_set or dest.is_dir())
        ):
            raise OutputRefused(
                f"refusing to publish into {target}: the build writes {rel}, and a file or "
                f"folder that is not cdiscforge's is in the way. Move it elsewhere and build "
                f"again. {_WHAT_TO_DO}"
            )
    backup = backup or _backup_path(target)
    moved_old: list[str] = []
    moved_new: list[str] = []
    made_dirs: list[Path] = []
    manifest = target / MANIFEST
    old_manifest = manifest.read_bytes() if manifest.is_file() else None

    def mkdirs(folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            made_dirs.append(d)

    with signals_deferred():
        try:
            mkdirs(target)
            intent = {
                "cdiscforge_manifest": _FORMAT,
                "state": "swap in progress: every file listed here is cdiscforge's",
                "files": {p: {} for p in sorted(old_set | set(new_paths))},
                "run_files": [],
            }
            tmp = target / f".{MANIFEST}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(intent, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, manifest)
            for rel in old_paths:
                src = target / rel
                if not _real_parents_ok(target, rel) or (src.is_dir() and not src.is_symlink()):
                    continue  # not a file of ours any more: leave it
                if not (src.exists() or src.is_symlink()):
                    continue
                (backup / rel).parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, backup / rel)
                moved_old.append(rel)
            for rel in new_paths:
                mkdirs((target / rel).parent)
                os.rename(staged / rel, target / rel)
                moved_new.append(rel)
            os.replace(staged / MANIFEST, manifest)  # the commit point
        except BaseException:
            _roll_back(target, staged, backup, moved_old, moved_new, made_dirs, old_manifest)
            raise
        shutil.rmtree(backup, ignore_errors=True)
        for rel in old_paths:
            _prune_empty(target, (target / rel).parent)
    return moved_old


def _roll_back(
    target: Path,
    staged: Path,
    backup: Path,
    moved_old: list[str],
    moved_new: list[str],
    made_dirs: list[Path],
    old_manifest: bytes | None,
) -> None:
    """Undo a partial swap: the new files go back to staging, the old ones come home."""
    for rel in reversed(moved_new):
        with contextlib.suppress(OSError):
            os.rename(target / rel, staged / rel)
    failed: list[str] = []
    for rel in reversed(moved_old):
        try:
            os.rename(backup / rel, target / rel)
        except OSError:
            failed.append(rel)
    manifest = target / MANIFEST
    if old_manifest is None:
        manifest.unlink(missing_ok=True)
    else:
        tmp = target / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_bytes(old_manifest)
        os.replace(tmp, manifest)
    (target / f".{MANIFEST}.{os.getpid()}.tmp").unlink(missing_ok=True)
    for d in reversed(made_dirs):
        with contextlib.suppress(OSError):
            d.rmdir()
    if failed:
        raise CdiscforgeError(
            f"publishing into {target} failed and {len(failed)} previous file(s) could not be "
            f"moved back; they are in {backup} (e.g. {failed[0]}): move them back by hand"
        )
    shutil.rmtree(backup, ignore_errors=True)


def _prune_empty(target: Path, folder: Path) -> None:
    """Remove folders a removed file of ours left empty, up to (not including) target."""
    while folder != target and folder.is_relative_to(target):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def remove_owned(target: Path, manifest: Manifest | None) -> None:
    """Remove the files `manifest` lists in `target`, and the manifest; the user's stay."""
    if manifest is None:
        return
    with signals_deferred():
        for rel in sorted(manifest.paths):
            path = target / rel
            if _real_parents_ok(target, rel) and (path.is_file() or path.is_symlink()):
                path.unlink()
                _prune_empty(target, path.parent)
        (target / MANIFEST).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.rmdir()
