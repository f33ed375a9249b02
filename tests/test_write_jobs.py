"""The writing of a build as jobs two processes share (build._Outputs on
concurrent.share_jobs): the same files and log lines whichever process wrote what, and a
define.xml cross-check that fails says what the whole-stage `crosscheck` says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdiscforge import build
from cdiscforge.buildlog import BuildLog
from cdiscforge.define import crosscheck
from cdiscforge.errors import CdiscforgeError
from cdiscforge.model import Dataset
from cdiscforge.spec import StudySpec


def _write(built: tuple[StudySpec, dict[str, Dataset]], out: Path) -> tuple[list[Path], BuildLog]:
    study, datasets = built
    sdtm = {n: d for n, d in datasets.items() if not n.startswith("AD")}
    adam = {n: d for n, d in datasets.items() if n.startswith("AD")}
    log = BuildLog()
    files = build.write_outputs(study, sdtm, adam, out, log, datasetjson=("json", "ndjson"))
    return files, log


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_two_processes_write_what_one_writes(
    built: tuple[StudySpec, dict[str, Dataset]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("CDISCFORGE_WORKERS", workers)
        out = tmp_path / workers
        files, log = _write(built, out)
        written[workers] = (
            [p.relative_to(out) for p in files],
            _tree(out),
            log.events,
            list(log.outputs.items()),
        )
    assert written["1"] == written["2"]
    rel, tree, events, outputs = written["1"]
    assert sorted(map(str, rel)) == sorted(
        tree.keys() - {"sdtm/define2-1.xsl", "adam/define2-1.xsl"}
    )
    checked = [e.dataset for e in events if e.message.startswith("define.xml valid and cross")]
    assert checked == ["SDTM", "ADAM"] and events[-1].stage == "tables"  # one process's order
    assert [name for name, _ in outputs][:2] == ["sdtm/ae.xpt", "sdtm/cm.xpt"]


def test_a_failed_cross_check_says_what_crosscheck_says(
    built: tuple[StudySpec, dict[str, Dataset]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """define.xml points AE at a file nobody wrote: the problems come from several jobs (the
    undescribed XPT and JSON files, the group no dataset's job takes) and must read as one
    `crosscheck` of the stage lists them."""
    from cdiscforge import define

    real = define.write_define

    def wrong(datasets: list[Dataset], out_path: Path, **kw: object) -> Path:
        path = real(datasets, out_path, **kw)  # type: ignore[arg-type]
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r'xlink:href="ae\.xpt"', 'xlink:href="zz.xpt"', text))
        return path

    monkeypatch.setattr(define, "write_define", wrong)
    messages = []
    for workers in ("1", "2"):
        monkeypatch.setenv("CDISCFORGE_WORKERS", workers)
        out = tmp_path / workers
        with pytest.raises(CdiscforgeError, match=r"sdtm define\.xml cross-check failed") as err:
            _write(built, out)
        problems = crosscheck(
            out / "sdtm" / "define.xml",
            out / "sdtm",
            out / "datasetjson" / "sdtm",
            encodings=("json", "ndjson"),
        )
        assert len(problems) >= 3
        assert str(err.value) == "sdtm define.xml cross-check failed: " + "; ".join(problems[:5])
        messages.append(str(err.value).replace(str(out), "OUT"))
    assert messages[0] == messages[1]


def test_the_hash_jobs_give_each_written_files_sha256(
    built: tuple[StudySpec, dict[str, Dataset]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `hashes`, every XPT and Dataset-JSON file (each encoding) is hashed as a job, by
    either process, after it was written: the manifest's size and sha256 of the file."""
    from cdiscforge import outputs
    from cdiscforge.concurrent import share_jobs

    study, datasets = built
    sdtm = {n: d for n, d in datasets.items() if not n.startswith("AD")}
    adam = {n: d for n, d in datasets.items() if n.startswith("AD")}
    found = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("CDISCFORGE_WORKERS", workers)
        out = tmp_path / workers
        plan = build._Outputs(study, sdtm, adam, out, ("json", "ndjson"), hashes=True)
        shared = share_jobs(plan.jobs)
        plan.finish(shared, BuildLog())
        found[workers] = digests = plan.digests(shared)
        data = {
            p.relative_to(out).as_posix()
            for p in out.rglob("*")
            if p.suffix in (".xpt", ".json", ".ndjson")
        }
        assert set(digests) == data and len(data) == 3 * len(datasets)
        for rel, (size, digest) in digests.items():
            assert (size, digest) == ((out / rel).stat().st_size, outputs.sha256_file(out / rel))
    assert found["1"] == found["2"]
    plain = build._Outputs(study, sdtm, adam, tmp_path / "plain", ("json",))
    assert not [key for key in plain.keys if key[0] == "hash"]  # write_outputs hashes nothing


def test_the_manifest_takes_known_digests_of_files_of_that_size(tmp_path: Path) -> None:
    """`write_manifest(known=...)` writes the given sha256 of a file whose size is the one
    given (the build hashed it after writing it), hashes the others (a size that changed,
    a file not given) and ignores a known file that is not there."""
    import json

    from cdiscforge import outputs

    for rel, text in (("sdtm/a.xpt", "aaaa"), ("sdtm/b.xpt", "bb"), ("c.txt", "c")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    known = {"sdtm/a.xpt": (4, "f" * 64), "sdtm/b.xpt": (3, "e" * 64), "gone.xpt": (1, "d" * 64)}
    path = outputs.write_manifest(tmp_path, inputs={}, known=known)
    files = json.loads(path.read_text())["files"]
    assert set(files) == {"sdtm/a.xpt", "sdtm/b.xpt", "c.txt"}
    assert files["sdtm/a.xpt"] == {"size": 4, "sha256": "f" * 64}  # taken as given
    for rel in ("sdtm/b.xpt", "c.txt"):  # its size is not the one given; not given
        want = outputs.sha256_file(tmp_path / rel)
        assert files[rel] == {"size": (tmp_path / rel).stat().st_size, "sha256": want}


def test_the_heavy_datasets_cross_check_comes_right_after_its_files(
    built: tuple[StudySpec, dict[str, Dataset]], tmp_path: Path
) -> None:
    """The cross-check of the largest dataset (MK at 10,000 subjects: the longest job) is
    queued right after the last job it reads (its XPT, Dataset-JSON files, the stage's
    define.xml), ahead of the other writes, instead of after all of them; every job still
    waits only for jobs before it, and each check for exactly the files it reads."""
    study, datasets = built
    sdtm = {n: d for n, d in datasets.items() if not n.startswith("AD")}
    adam = {n: d for n, d in datasets.items() if n.startswith("AD")}
    plan = build._Outputs(study, sdtm, adam, tmp_path, ("json", "ndjson"), hashes=True)
    keys = plan.keys
    largest = max(sdtm.values(), key=lambda d: len(d) * len(d.variables)).name
    check = keys.index(("check", "sdtm", largest))
    reads = [("xpt", "sdtm", largest), ("define", "sdtm")]
    reads += [("json", "sdtm", largest, e) for e in ("json", "ndjson")]
    assert plan.jobs[check].after == tuple(sorted(keys.index(k) for k in reads))
    assert check == max(plan.jobs[check].after) + 1  # taken as soon as its files are there
    writes = [n for n, k in enumerate(keys) if k[0] in ("xpt", "json", "define", "spec")]
    assert check < max(writes)  # not behind every write any more
    other = [n for n, k in enumerate(keys) if k[0] == "check" and k[2] != largest]
    assert min(other) > max(writes)  # the small checks keep their place after the writes
    assert sorted(keys) == sorted(set(keys))  # every job once


def test_the_ahead_childs_jobs_come_after_the_files_they_read(
    built: tuple[StudySpec, dict[str, Dataset]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child writing SDTM's files while ADaM is built (build._Ahead) runs its jobs one
    after the other in its own order: every file a job of it reads is written by it before
    (the plan queues the heavy dataset's cross-check among the writes: in the child's order
    it once came before that dataset's Dataset-JSON, failed and stopped the child), and it
    takes no long job but the first heavy write (the heavy writes after it, a heavy
    dataset's cross-check and what reads their files: started just before ADaM ends, one
    kept the build waiting with a core idle)."""
    from cdiscforge import engine

    monkeypatch.setattr(build, "workers", lambda: 2)
    monkeypatch.setattr(engine, "BESIDE_MIN_ROWS", 0)
    study, datasets = built
    sdtm = {n: d for n, d in datasets.items() if not n.startswith("AD")}
    ahead = build._Ahead(study, sdtm, tmp_path, ("json", "ndjson"), True)
    plan = ahead.plan
    assert ahead.running and len(plan.heavy) > 1
    mine = {key: n for n, key in enumerate(ahead.keys)}
    heavy_sets = {h[1:3] for h in plan.heavy}
    assert plan.heavy[0] in mine and not set(plan.heavy[1:]) & mine.keys()
    assert not [k for k in mine if k[0] == "check" and k[1:3] in heavy_sets]
    assert [k for k in mine if k[0] == "check"] and [k for k in mine if k[0] == "hash"]
    for key, n in mine.items():
        reads = [plan.keys[i] for i in plan.jobs[plan.keys.index(key)].after]
        assert all(k in mine and mine[k] < n for k in reads), key
    skipped = [k for k in plan.keys if k not in mine and k[0] not in ("rules", "rest")]
    for key in skipped:  # each left out is long or reads what is left out
        reads = {plan.keys[i] for i in plan.jobs[plan.keys.index(key)].after}
        long = key in plan.heavy[1:] or (key[0] == "check" and key[1:3] in heavy_sets)
        assert long or reads - mine.keys(), key
