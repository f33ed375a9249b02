"""Output folders cdiscforge owns, and only those (issue 10), through the real CLI.

One default build per module (`previous`) is copied wherever a test needs "a folder holding
a previous output", so the module costs about three builds, not one per test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdiscforge.outputs import MANIFEST, Manifest, OutputRefused, check_target, swap_in

CLI = [sys.executable, "-m", "cdiscforge.cli"]
REFUSED = "cdiscforge never deletes or overwrites files it did not write"


def _run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=900
    )


def _popen(*args: str | Path, stderr: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=stderr.open("w"),
        text=True,
    )


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder (hidden ones too), by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _leftovers(parent: Path) -> list[str]:
    """Staging, backup and lock files of ours anywhere under parent."""
    marks = (".staging-", ".backup-", ".cdiscforge.lock", f".{MANIFEST}.")
    return sorted(str(p) for p in parent.rglob(".*") if any(m in p.name for m in marks))


def _wait_for(predicate: object, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A previous output: one default build, copied by the tests that need one."""
    out = tmp_path_factory.mktemp("previous") / "out"
    result = _run("build", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def _copy(previous: Path, dest: Path) -> Path:
    shutil.copytree(previous, dest)
    return dest


# --------------------------------------------------------------------------- the manifest


def test_manifest_lists_every_file_written_with_size_and_sha256(previous: Path) -> None:
    data = json.loads((previous / MANIFEST).read_text())
    on_disk = {p for p in _snapshot(previous) if p != MANIFEST}
    assert set(data["files"]) | set(data["run_files"]) == on_disk
    assert data["run_files"] == ["timings.json"]  # seconds vary: owned, not hashed
    snap = _snapshot(previous)
    for rel, meta in data["files"].items():
        assert meta["sha256"] == snap[rel] and meta["size"] == (previous / rel).stat().st_size
    assert {"sdtm/dm.xpt", "adam/adsl.xpt", "raw/demographics.csv", "build.log"} <= set(
        data["files"]
    )
    assert data["tool"]["name"] == "cdiscforge" and data["tool"]["version"]
    assert "study.yaml" in data["inputs"]["spec"] and "sdtm/dm.yaml" in data["inputs"]["spec"]
    assert data["inputs"]["raw"]["demographics.csv"] == snap["raw/demographics.csv"]
    assert data["inputs"]["raw_simulated"] is True


# --------------------------------------------------------------------------- refusals


def test_folder_with_a_foreign_file_is_refused_and_untouched(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    (out / "draft.docx").write_bytes(bytes(range(256)))
    before = _snapshot(out)
    result = _run("build", "--out", out)
    assert result.returncode == 2, result.stderr
    assert f"error: refusing to build into {out.resolve()}: it is not empty" in result.stderr
    assert "notes.txt" in result.stderr and MANIFEST in result.stderr and REFUSED in result.stderr
    assert "Traceback" not in result.stderr and "] specs" not in result.stderr  # before building
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging, no lock


def test_out_dot_in_a_project_folder_is_refused(tmp_path: Path, default_raw: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(default_raw, project / "raw")
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    before = _snapshot(project)
    result = _run("build", "--raw", "raw", "--out", ".", cwd=project)
    assert result.returncode == 2, result.stderr
    assert "it is the current project folder" in result.stderr
    assert "pyproject.toml or .git" in result.stderr
    assert _snapshot(project) == before
    # A folder *above* the project is refused for the same reason, even when empty otherwise.
    sub = project / "sub"
    sub.mkdir()
    result = _run("build", "--raw", "../raw", "--out", "..", cwd=sub)
    assert result.returncode == 2 and "the current project folder" in result.stderr


def test_home_spec_and_raw_folders_are_refused(
    tmp_path: Path, seed_spec: Path, default_raw: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    for out, why in ((home, "it is your home folder"), (tmp_path, "it contains your home folder")):
        result = _run("build", "--out", out, env=env, cwd=tmp_path)
        assert result.returncode == 2 and why in result.stderr, result.stderr
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    result = _run("build", "--spec", spec, "--out", spec)
    assert result.returncode == 2 and "it is the spec folder" in result.stderr, result.stderr
    raw = tmp_path / "exports" / "raw"
    shutil.copytree(default_raw, raw)
    result = _run("build", "--raw", raw, "--out", raw)
    assert result.returncode == 2 and "it is the raw export folder" in result.stderr
    result = _run("build", "--raw", raw, "--out", raw.parent)
    assert result.returncode == 2 and "it contains the raw export folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_outputs_folder_inside_a_project_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    spec = tmp_path / "specs" / "s"
    root = check_target(
        Path("outputs/s"), spec_dir=spec, raw_dir=None, cwd=tmp_path, home=Path("/nonexistent-home")
    )
    assert root == (Path.cwd() / "outputs" / "s").resolve()
    with pytest.raises(OutputRefused, match="current project folder"):
        check_target(
            tmp_path / "x" / "..",
            spec_dir=spec,
            raw_dir=None,
            cwd=tmp_path,
            home=Path("/nonexistent-home"),
        )


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make folder unwritable, also for root (chattr +i), and undo it afterwards."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a folder read-only")
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i not supported here: {done.stderr!r}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


@pytest.mark.parametrize("which", ["out", "sdtm", "parent"])
def test_read_only_out_or_parent_is_refused_before_building(
    which: str, previous: Path, tmp_path: Path
) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"
    if which != "parent":
        _copy(previous, out)
    locked = {"out": out, "sdtm": out / "sdtm", "parent": parent}[which]
    before = _snapshot(parent)
    with _read_only(locked):
        result = _run("build", "--out", out)
    assert result.returncode == 2, result.stderr
    said = {
        "out": f"the output folder {out.resolve()} is read-only",
        "sdtm": f"{locked.resolve()} inside the output folder {out.resolve()} is read-only",
        "parent": f"{parent.resolve()} is read-only, and the output folder out, its staging",
    }[which]
    assert f"error: cannot write the output: {said}" in result.stderr
    assert "Nothing was built or changed" in result.stderr
    assert "] specs" not in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(parent) == before and not _leftovers(parent)


# --------------------------------------------------------------------------- a failed validation


@pytest.fixture(scope="module")
def failed_build(
    previous: Path, tmp_path_factory: pytest.TempPathFactory, failing_study: Callable
) -> tuple[Path, dict[str, str], subprocess.CompletedProcess[str]]:
    """A previous output, then a build of the same study whose validation fails."""
    tmp = tmp_path_factory.mktemp("failed")
    spec, raw = failing_study(tmp)
    out = _copy(previous, tmp / "out")
    before = _snapshot(out)
    result = _run("build", "--spec", spec, "--raw", raw, "--out", out)
    return out, before, result


def test_failed_validation_keeps_previous_package_byte_identical(
    failed_build: tuple[Path, dict[str, str], subprocess.CompletedProcess[str]],
) -> None:
    out, before, result = failed_build
    assert result.returncode == 1, result.stderr
    assert f"the previous output in {out.resolve()} is unchanged" in result.stderr
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if not k.startswith("failed/")} == before
    assert not _leftovers(out.parent)


def test_failed_validation_publishes_its_report_where_the_message_says(
    failed_build: tuple[Path, dict[str, str], subprocess.CompletedProcess[str]],
) -> None:
    out, _, result = failed_build
    report = out.resolve() / "failed" / "validation" / "report.html"
    log = out.resolve() / "failed" / "build.log"
    assert f"Report: {report}; log: {log}" in result.stderr
    assert report.is_file() and log.is_file() and "SEX" in result.stderr
    failed = Manifest.read(out / "failed")
    assert failed is not None and "validation/report.html" in failed.files
    assert not list((out / "failed").rglob("*.xpt"))  # never datasets that failed


def test_failed_validation_while_writing_leaves_what_a_one_process_build_leaves(
    failed_build: tuple[Path, dict[str, str], subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    """On two cores the datasets are written while the validation runs (cdiscforge.concurrent);
    a validation that fails must still publish nothing written and no line of the writing:
    failed/ holds the same bytes as when one process validates first and never writes."""
    out, _, result = failed_build
    spec, raw = out.parent / "spec", out.parent / "raw"  # the same inputs (paths in the log)
    alone = tmp_path / "alone"
    env = {**os.environ, "CDISCFORGE_WORKERS": "1"}
    single = _run("build", "--spec", spec, "--raw", raw, "--out", alone, env=env)
    assert single.returncode == result.returncode == 1, single.stderr
    assert "] validate + write" in result.stderr and "] validate + write" not in single.stderr
    both, one = _snapshot(out / "failed"), _snapshot(alone / "failed")
    for files in (both, one):
        files.pop("timings.json")
    assert both == one
    assert "define.xml valid" not in (out / "failed" / "build.log").read_text()


# ------------------------------------------------------------- a rebuild, a rival, a stale lock


@pytest.fixture(scope="module")
def rebuild(
    failed_build: tuple[Path, dict[str, str], subprocess.CompletedProcess[str]],
    tmp_path_factory: pytest.TempPathFactory,
    default_raw: Path,
) -> dict[str, object]:
    """The failed build's folder plus a user's files and a stale lock, rebuilt from --raw
    (so the simulated raw/ of the previous build is no longer produced); a second build
    into the same folder is started while the first holds the lock."""
    tmp = tmp_path_factory.mktemp("rebuild")
    out = _copy(failed_build[0], tmp / "out")
    user = {
        "notes.txt": b"my notes\n",
        "sdtm/my_check.sas": b"proc compare; run;\n",
        "failed/triage.md": b"# why SEX failed\n",
    }
    for rel, data in user.items():
        (out / rel).write_bytes(data)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp / ".out.cdiscforge.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "started": "2026-01-02T03:04:05+00:00"}))
    killed = tmp / ".out.staging-999999"  # what a `kill -9` of an earlier build leaves
    (killed / "sdtm").mkdir(parents=True)
    (killed / "sdtm" / "dm.xpt").write_bytes(b"half written")
    stderr = tmp / "first.err"
    first = _popen("build", "--raw", default_raw, "--out", out, stderr=stderr)
    _wait_for(lambda: f'"pid": {first.pid}' in (lock.read_text() if lock.exists() else ""))
    holder = json.loads(lock.read_text())
    second = _run("build", "--out", out)
    stdout, _ = first.communicate(timeout=900)
    return {
        "out": out,
        "user": user,
        "first": first,
        "first_stdout": stdout,
        "first_stderr": stderr.read_text(),
        "holder": holder,
        "dead_pid": dead.pid,
        "second": second,
    }


def test_rebuild_keeps_user_files_and_names_them_in_the_log(
    rebuild: dict[str, object], previous: Path
) -> None:
    out: Path = rebuild["out"]  # type: ignore[assignment]
    first: subprocess.Popen[str] = rebuild["first"]  # type: ignore[assignment]
    assert first.returncode == 0, rebuild["first_stderr"]
    for rel, data in rebuild["user"].items():  # type: ignore[attr-defined]
        assert (out / rel).read_bytes() == data, rel
    log = (out / "build.log").read_text()
    assert "kept 3 file(s) in the output folder that cdiscforge did not write" in log
    for rel in rebuild["user"]:  # type: ignore[attr-defined]
        assert rel in log
    assert "kept 3 file(s) of yours" in rebuild["first_stdout"]  # type: ignore[operator]
    manifest = Manifest.read(out)
    assert manifest is not None and not set(rebuild["user"]) & manifest.paths  # type: ignore[arg-type]
    # Exactly the files the old manifest listed were replaced: raw/ (simulated last time,
    # given by --raw now) is gone, the datasets are the same bytes, failed/ holds only
    # the user's file once the successful build removed the failed report.
    assert not (out / "raw").exists()
    assert (out / "sdtm" / "dm.xpt").read_bytes() == (previous / "sdtm" / "dm.xpt").read_bytes()
    assert sorted(p.name for p in (out / "failed").iterdir()) == ["triage.md"]
    assert set(_snapshot(out)) == manifest.paths | {MANIFEST} | set(rebuild["user"])  # type: ignore[arg-type]
    assert not _leftovers(out.parent)


def test_second_concurrent_build_exits_2_naming_the_first(rebuild: dict[str, object]) -> None:
    second: subprocess.CompletedProcess[str] = rebuild["second"]  # type: ignore[assignment]
    holder: dict[str, object] = rebuild["holder"]  # type: ignore[assignment]
    first: subprocess.Popen[str] = rebuild["first"]  # type: ignore[assignment]
    assert second.returncode == 2, second.stderr
    assert (
        f"another cdiscforge build (pid {first.pid}, started {holder['started']}) is writing "
        f"into {Path(rebuild['out']).resolve()}"  # type: ignore[arg-type]
    ) in second.stderr
    assert "Traceback" not in second.stderr and "] specs" not in second.stderr


def test_stale_lock_is_taken_over_and_logged(rebuild: dict[str, object]) -> None:
    out: Path = rebuild["out"]  # type: ignore[assignment]
    dead = rebuild["dead_pid"]
    lock = out.resolve().parent / ".out.cdiscforge.lock"
    said = f"took over the stale lock {lock} of build pid {dead}"
    assert said in rebuild["first_stderr"]  # type: ignore[operator]
    assert said in (out / "build.log").read_text()
    assert not (out.parent / ".out.cdiscforge.lock").exists()


def test_leftover_staging_of_a_killed_build_is_removed_and_logged(
    rebuild: dict[str, object],
) -> None:
    out: Path = rebuild["out"]  # type: ignore[assignment]
    killed = out.resolve().parent / ".out.staging-999999"
    said = f"removed {killed}, left by an earlier build that was killed"
    assert said in (out / "build.log").read_text() and not killed.exists()


def test_leftover_backup_is_reported_never_removed(tmp_path: Path) -> None:
    from cdiscforge.outputs import clear_leftovers

    backup = tmp_path / ".out.backup-4242"
    backup.mkdir()
    (backup / "dm.xpt").write_bytes(b"previous")
    (tmp_path / ".out.staging-notapid").mkdir()  # not our pattern: never touched
    notes = clear_leftovers(tmp_path / "out")
    assert notes == [
        f"{backup} was left by a build killed while publishing: it holds previous versions "
        "of files cdiscforge wrote; delete it once you do not need them"
    ]
    assert (backup / "dm.xpt").read_bytes() == b"previous"
    assert (tmp_path / ".out.staging-notapid").is_dir()


def test_a_crash_mid_build_keeps_previous_output_and_leaves_no_staging(
    previous: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed_spec: Path
) -> None:
    """Any exception, not only ours: here validation itself crashes, after SDTM and ADaM."""
    import cdiscforge.build as build
    from cdiscforge import validation

    out = _copy(previous, tmp_path / "out")
    before = _snapshot(out)

    def crash(*_args: object, **_kw: object) -> None:
        raise RuntimeError("validation crashed (simulated)")

    monkeypatch.setattr(validation, "validate_datasets", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        build.run_build(seed_spec, out)
    assert _snapshot(out) == before
    assert not _leftovers(tmp_path)


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("sig", "code", "stage"), [(signal.SIGINT, 130, "] sdtm"), (signal.SIGTERM, 143, "] validate")]
)
def test_signal_mid_build_keeps_previous_output_and_leaves_no_staging(
    sig: signal.Signals, code: int, stage: str, previous: Path, tmp_path: Path
) -> None:
    out = _copy(previous, tmp_path / "out")
    before = _snapshot(out)
    stderr = tmp_path / "build.err"
    proc = _popen("build", "--out", out, stderr=stderr)
    try:
        _wait_for(lambda: stage in stderr.read_text() or proc.poll() is not None)
        assert proc.poll() is None, stderr.read_text()
        assert [p.name for p in tmp_path.glob(".out.staging-*")] == [f".out.staging-{proc.pid}"]
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = stderr.read_text()
    assert proc.returncode == code, text
    assert f"error: build interrupted by {sig.name}; nothing was published" in text
    assert "Traceback" not in text
    assert _snapshot(out) == before
    assert not _leftovers(tmp_path), _leftovers(tmp_path)


# --------------------------------------------------------------------------- the swap itself


def test_swap_rolls_back_when_a_move_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any failure mid-swap (here the third new file's rename) restores the old folder."""
    import cdiscforge.outputs as outputs

    target = tmp_path / "out"
    (target / "sub").mkdir(parents=True)
    for rel in ("a.txt", "sub/b.txt", "old_only.txt"):
        (target / rel).write_text(f"old {rel}\n")
    outputs.write_manifest(target, inputs={})
    old_manifest = Manifest.read(target)
    (target / "user.txt").write_text("mine\n")  # the user's, added after that build
    staged = tmp_path / "staged"
    (staged / "sub").mkdir(parents=True)
    for rel in ("a.txt", "sub/b.txt", "c.txt", "new/d.txt"):
        (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        (staged / rel).write_text(f"new {rel}\n")
    outputs.write_manifest(staged, inputs={})
    before = _snapshot(target)
    real_rename = os.rename
    calls = {"new": 0}

    def flaky(src: object, dst: object) -> None:
        if Path(str(src)).is_relative_to(staged):
            calls["new"] += 1
            if calls["new"] == 3:
                raise OSError("disk full (simulated)")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(outputs.os, "rename", flaky)
    with pytest.raises(OSError, match="simulated"):
        swap_in(staged, target, old_manifest)
    assert _snapshot(target) == before
    assert not (target / "new").exists()
    assert not list(tmp_path.glob(".*backup*"))
    monkeypatch.setattr(outputs.os, "rename", real_rename)
    swap_in(staged, target, old_manifest)  # and the same swap, not failing, publishes
    assert (target / "c.txt").read_text() == "new c.txt\n" and not (
        target / "old_only.txt"
    ).exists()
    assert (target / "user.txt").read_text() == "mine\n"


def test_swap_refuses_to_land_on_a_file_no_manifest_lists(tmp_path: Path) -> None:
    """A user's file where the new build would write: refused, nothing moved."""
    import cdiscforge.outputs as outputs

    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old\n")
    outputs.write_manifest(target, inputs={})
    old_manifest = Manifest.read(target)
    (target / "raw").mkdir()
    (target / "raw" / "demographics.csv").write_text("the user's own export\n")
    staged = tmp_path / "staged"
    (staged / "raw").mkdir(parents=True)
    (staged / "a.txt").write_text("new\n")
    (staged / "raw" / "demographics.csv").write_text("simulated\n")
    outputs.write_manifest(staged, inputs={})
    before = _snapshot(target)
    with pytest.raises(OutputRefused, match=r"the build writes raw/demographics\.csv"):
        swap_in(staged, target, old_manifest)
    assert _snapshot(target) == before and (staged / "a.txt").is_file()
