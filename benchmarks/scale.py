"""Build time and memory at N = 100, 1,000 and 10,000 subjects, against the I/O floor.

A script that measures, not a test (issue 15). For each N, in one run on the same files:

1. simulate the raw exports (`cdiscforge simulate --subjects N`, a child process);
2. build them (`cdiscforge build --raw ... --out ...`, a child process) while a sampler
   thread sums the resident memory (VmRSS in /proc) of the build process and all its
   descendants every 0.1 s: the peak of that sum is the process tree's peak RSS. The
   per-stage seconds are the build's own (timings.json, written next to build.log); records
   are the build log's output record counts (build.log OUTPUTS);
3. measure the I/O floor on those files: read every raw CSV with pyarrow (parsed into Arrow
   columns), and encode every output XPT's observations with numpy (fixed-width padded text,
   IBM doubles: `cdiscforge.xpt.ieee_to_ibm`) and write those bytes. The columns to encode
   are read back from the built XPT, 64 MiB of observations at a time, outside the timer;
   the floor's files are compared with the build's (same bytes), so the floor writes exactly
   what the build wrote.

Prints one table per N and, when both were run, t(10k) / t(1k). The targets (issue 15):
build <= 3x floor at 10,000 subjects, t(10k) / t(1k) <= 11, peak RSS <= 8 GB.

    python benchmarks/scale.py                      # N = 100, 1000, 10000
    python benchmarks/scale.py --sizes 100,1000
    python benchmarks/scale.py --sizes 1000 --keep /tmp/scale   # keep raw and outputs

Where the time goes (the profile issue 15 asks for), on raw exports kept with --keep:

    python -m cProfile -o build.prof -m cdiscforge.cli build --raw RAW --out OUT
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("simulate", "sdtm", "adam", "validate", "write")


# --------------------------------------------------------------------------------------------
# Peak RSS of a process tree
# --------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc/<pid>/task/*/children)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    kids += [int(k) for k in fh.read().split()]
            except OSError:
                continue
    except OSError:
        pass
    return kids


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _pss_bytes(pid: int) -> int:
    """Proportional set size of `pid` (/proc/<pid>/smaps_rollup): its private pages plus its
    share of pages shared with other processes, so the tree's PSS does not count a shared
    library or a forked copy-on-write page twice the way summed RSS does."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """`pid` and every descendant alive now."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every descendant, summed now."""
    return sum(_rss_bytes(p) for p in _tree(pid))


def tree_pss(pid: int) -> int:
    """Proportional set size of `pid` and every descendant, summed now."""
    return sum(_pss_bytes(p) for p in _tree(pid))


@dataclass
class Sampled:
    """What `run_sampled` measured of one child process tree.

    `step_rss` / `step_pss`: peak of each build stage (sdtm, adam, validate, write, ...;
    the build's progress lines say which stage each sample fell in); `fine_rss`: the same
    per progress line (`sdtm MK`, `adam ADLB` ...), to find the dataset a peak belongs to;
    `timeline`: (seconds since start, RSS, PSS or -1 when not sampled then)."""

    seconds: float
    rss: int
    pss: int
    output: str
    step_rss: dict[str, int]
    step_pss: dict[str, int]
    fine_rss: dict[str, int]
    timeline: list[tuple[float, int, int]]


def run_sampled(cmd: list[str], interval: float = 0.1, pss_every: int = 5) -> Sampled:
    """Run `cmd`, sampling the tree's RSS every `interval` s and its PSS every `pss_every`
    samples (smaps_rollup walks the page tables: slower to read than VmRSS). The build's
    progress lines (`[  12.3s] sdtm LB`, plain off a terminal) are timed as they arrive, so
    each sample falls in the step that was running."""
    from cdiscforge.progress import _stage_of

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()

    def sample() -> None:
        i = 0
        while not done.is_set():
            at, rss = time.perf_counter(), tree_rss(proc.pid)
            pss = tree_pss(proc.pid) if i % pss_every == 0 else -1
            samples.append((at, rss, pss))
            i += 1
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter(), line))
    proc.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    output = "".join(text for _, text in lines)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{output}")
    steps = [
        (at, m.group(1))
        for at, text in lines
        if (m := re.match(r"\[ *\d+\.\ds\] (.+)$", text.rstrip())) and not re.search(r": \d", text)
    ]
    step_rss: dict[str, int] = {}
    step_pss: dict[str, int] = {}
    fine_rss: dict[str, int] = {}
    for i, (at, step) in enumerate(steps):
        until = steps[i + 1][0] if i + 1 < len(steps) else float("inf")
        during = [(rss, pss) for t, rss, pss in samples if at <= t < until]
        if not during:
            continue
        stage = _stage_of(step)
        rss = max(r for r, _ in during)
        pss = max(p for _, p in during)
        step_rss[stage] = max(step_rss.get(stage, 0), rss)
        step_pss[stage] = max(step_pss.get(stage, 0), pss)
        fine_rss[step] = max(fine_rss.get(step, 0), rss)
    return Sampled(
        seconds=seconds,
        rss=max((rss for _, rss, _ in samples), default=0),
        pss=max((pss for _, _, pss in samples), default=0),
        output=output,
        step_rss=step_rss,
        step_pss=step_pss,
        fine_rss=fine_rss,
        timeline=[(t - start, rss, pss) for t, rss, pss in samples],
    )


# --------------------------------------------------------------------------------------------
# The I/O floor
# --------------------------------------------------------------------------------------------


def read_floor(raw: Path) -> tuple[float, int, int]:
    """Seconds to read and parse every raw CSV with pyarrow; (seconds, rows, bytes)."""
    files = sorted(raw.glob("*.csv"))
    start = time.perf_counter()
    rows = sum(pacsv.read_csv(f).num_rows for f in files)
    return time.perf_counter() - start, rows, sum(f.stat().st_size for f in files)


_FLOOR_CHUNK_BYTES = 64 * 1024 * 1024  # observations decoded and re-encoded a chunk at a time


def _decode(block: np.ndarray, layout: list[tuple[str, bool, int, int]]) -> list[object]:
    """A chunk of built observations as the columns the floor encodes (outside its timer):
    text as Arrow strings (blanks trimmed), numbers as the float64 values the build stored."""
    from cdiscforge.xpt import _char_chunk, ibm_to_ieee

    columns: list[object] = []
    for _, is_char, position, length in layout:
        part = np.ascontiguousarray(block[:, position : position + length])
        columns.append(_char_chunk(part, None) if is_char else ibm_to_ieee(part))
    return columns


def _encode(columns: list[object], layout: list[tuple[str, bool, int, int]], n: int) -> bytes:
    """The floor's encoder: each column to its fixed-width bytes (pyarrow pads the text,
    `ieee_to_ibm` converts the numbers), interleaved into observations with numpy."""
    from cdiscforge.xpt import ieee_to_ibm

    blocks = []
    for values, (_, is_char, _, width) in zip(columns, layout, strict=True):
        if is_char:
            padded = pc.utf8_rpad(pc.fill_null(values, ""), width=width, padding=" ")
            _, offsets, data = padded.buffers()
            first = int(np.frombuffer(offsets, dtype=np.int64)[padded.offset])
            block = np.frombuffer(data, dtype=np.uint8)[first : first + n * width]
            blocks.append(block.reshape(n, width))
        else:
            blocks.append(ieee_to_ibm(values).astype(">u8").view(np.uint8).reshape(n, 8))
    return np.hstack(blocks).tobytes() if blocks else b""


def write_floor(xpts: list[Path], scratch: Path) -> tuple[float, int]:
    """Seconds to encode every XPT's observations with numpy and write its bytes; the byte
    count. Observations are decoded from the built file a chunk at a time outside the timer
    (so memory stays bounded at 10,000 subjects); each floor file must equal the built one."""
    from cdiscforge.xpt import _namestr_layout

    scratch.mkdir(parents=True, exist_ok=True)
    seconds, written = 0.0, 0
    for path in xpts:
        with open(path, "rb") as fh:
            obs_start, row_length, layout = _namestr_layout(fh, path)
            fh.seek(0)
            header = fh.read(obs_start)
        data = np.memmap(path, dtype=np.uint8, mode="r")
        rows = (len(data) - obs_start) // row_length if row_length else 0
        body = data[obs_start : obs_start + rows * row_length].reshape(rows, row_length)
        while rows and (body[rows - 1] == 0x20).all():  # the last card's blank padding
            rows -= 1
        step = max(1, _FLOOR_CHUNK_BYTES // max(1, row_length))
        target = scratch / path.name
        with open(target, "wb") as fh:
            start = time.perf_counter()
            fh.write(header)
            seconds += time.perf_counter() - start
            size = 0
            for first in range(0, rows, step):
                count = min(step, rows - first)
                columns = _decode(body[first : first + count], layout)
                start = time.perf_counter()
                chunk = _encode(columns, layout, count)
                fh.write(chunk)
                seconds += time.perf_counter() - start
                size += len(chunk)
            start = time.perf_counter()
            fh.write(b" " * (-size % 80))
            fh.flush()  # no fsync: the build does not sync either
            seconds += time.perf_counter() - start
        del body, data
        if not filecmp.cmp(target, path, shallow=False):
            raise SystemExit(f"floor writer's {target.name} differs from the build's")
        written += target.stat().st_size
        target.unlink()
    return seconds, written


# --------------------------------------------------------------------------------------------
# One size
# --------------------------------------------------------------------------------------------


def _records(build_log: Path) -> dict[str, int]:
    """Output records per stage, from build.log's OUTPUTS section."""
    counts = {"sdtm": 0, "adam": 0}
    for line in build_log.read_text(encoding="utf-8").splitlines():
        m = re.match(r"  (sdtm|adam)/\S+\.xpt: (\{.*\})$", line)
        if m:
            counts[m.group(1)] += json.loads(m.group(2))["records"]
    return counts


def _subjects(build_log: Path) -> int:
    """Subjects of a build: DM's records (build.log OUTPUTS), one per subject."""
    for line in build_log.read_text(encoding="utf-8").splitlines():
        m = re.match(r"  sdtm/dm\.xpt: (\{.*\})$", line)
        if m:
            return int(json.loads(m.group(1))["records"])
    return 0


def run_size(
    n: int, work: Path, *, raw: Path | None = None, out: Path | None = None, floor: bool = True
) -> dict[str, object]:
    """Simulate N subjects (unless `raw` holds their exports already), build them into
    `out` (default work/outN) while sampling memory, and measure the I/O floor (`floor`)."""
    py = sys.executable
    if raw is None:
        raw = work / f"raw{n}"
        sim = run_sampled(
            [py, "-m", "cdiscforge.cli", "simulate", "--subjects", str(n), "--out", str(raw)]
        )
    else:
        sim = None
    out = out or work / f"out{n}"
    cmd = [py, "-m", "cdiscforge.cli", "build", "--raw", str(raw), "--out", str(out)]
    build = run_sampled(cmd)
    timings = json.loads((out / "timings.json").read_text())
    records = _records(out / "build.log")
    if not floor:
        return {"subjects": n, "build_s": build.seconds, "build_rss": build.rss,
                "sampled": build, "timings": timings, "records": records}  # fmt: skip
    read_s, raw_rows, raw_bytes = read_floor(raw)
    xpts = sorted((out / "sdtm").glob("*.xpt")) + sorted((out / "adam").glob("*.xpt"))
    write_s, xpt_bytes = write_floor(xpts, work / f"floor{n}")
    return {
        "subjects": n,
        "simulate_s": sim.seconds if sim else None,
        "simulate_rss": sim.rss if sim else None,
        "build_s": build.seconds,
        "build_rss": build.rss,
        "sampled": build,
        "timings": timings,
        "records": records,
        "raw_rows": raw_rows,
        "raw_bytes": raw_bytes,
        "read_floor_s": read_s,
        "write_floor_s": write_s,
        "xpt_bytes": xpt_bytes,
        "xpt_files": len(xpts),
    }


def memory_report(b: Sampled) -> list[str]:
    """Peak RSS and PSS of the process tree, per stage and per progress step (the top ones)."""
    gib = 2**30
    lines = [
        f"  peak RSS of the build's process tree: {b.rss / gib:.2f} GiB "
        f"({b.rss / 1e9:.2f} GB); peak PSS {b.pss / gib:.2f} GiB",
        f"  {'stage':<22} {'peak RSS GiB':>12} {'peak PSS GiB':>12}",
    ]
    for stage, rss in b.step_rss.items():
        lines.append(f"  {stage:<22} {rss / gib:>12.2f} {b.step_pss.get(stage, 0) / gib:>12.2f}")
    top = sorted(b.fine_rss.items(), key=lambda kv: -kv[1])[:8]
    lines.append("  highest steps (RSS GiB): " + ", ".join(f"{k} {v / gib:.2f}" for k, v in top))
    return lines


both_parts = ("validate", "write")


def step_seconds(output: str) -> dict[str, float]:
    """Seconds of each finished step, from the build's own progress lines
    (`[  45.1s] validate + write: 37.4s, 12,786,117 records, ...`)."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        m = re.match(r"\[ *\d+\.\ds\] (.+?): (\d+\.\d)s", line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def report(r: dict[str, object]) -> list[str]:
    t: dict[str, float] = r["timings"]  # type: ignore[assignment]
    rec: dict[str, int] = r["records"]  # type: ignore[assignment]
    total_rec = rec["sdtm"] + rec["adam"]
    build_s = float(r["build_s"])  # type: ignore[arg-type]
    sampled: Sampled = r["sampled"]  # type: ignore[assignment]
    has_floor = "read_floor_s" in r
    floor = float(r["read_floor_s"]) + float(r["write_floor_s"]) if has_floor else 0.0  # type: ignore[arg-type]

    def rate(records: int, seconds: float | None) -> str:
        return f"{records / seconds:>12,.0f}" if seconds else f"{'':>12}"

    lines = [f"N = {r['subjects']:,} subjects: {total_rec:,} records "
             f"({rec['sdtm']:,} SDTM, {rec['adam']:,} ADaM)"]  # fmt: skip
    if has_floor:
        lines[0] += (
            f" from {r['raw_rows']:,} raw rows ({int(r['raw_bytes']) / 1e6:.1f} MB CSV) "  # type: ignore[arg-type]
            f"in {r['xpt_files']} XPT ({int(r['xpt_bytes']) / 1e6:.1f} MB)"  # type: ignore[arg-type]
        )
    if r.get("simulate_s") is not None:
        lines.append(
            f"  simulate (not in build): {float(r['simulate_s']):.1f} s, "  # type: ignore[arg-type]
            f"peak RSS {int(r['simulate_rss']) / 2**30:.2f} GiB"  # type: ignore[arg-type]
        )
    lines.append(f"  {'stage':<16} {'seconds':>8} {'records/s':>12}")
    per_stage = {
        "sdtm": rec["sdtm"],
        "adam": rec["adam"],
        "validate": total_rec,
        "write": total_rec,
    }
    steps = step_seconds(sampled.output)
    both = steps.get("validate + write")  # on two cores: at once (cdiscforge.concurrent)
    for stage in STAGES:
        if stage in t:
            speed = rate(per_stage.get(stage, 0), t[stage])
            at_once = "   (at once, see below)" if both is not None and stage in both_parts else ""
            lines.append(f"  {stage:<16} {t[stage]:>8.1f} {speed}{at_once}")
    if both is not None:
        checks = steps.get("validate define.xml", 0.0)
        lines.append(
            f"  {'validate + write':<16} {both:>8.1f} {rate(total_rec, both)}   (wall of the two "
            f"at once, the define.xml rules among the jobs; then their findings merged and the "
            f"report rewritten, {checks:.1f} s)"
        )
        other = build_s - t.get("sdtm", 0) - t.get("adam", 0) - t.get("simulate", 0) - both - checks
    else:
        other = build_s - sum(t.values())
    lines += [
        f"  {'other':<16} {other:>8.1f}   (start-up, specs, reading raw, hashes, publish)",
        f"  {'build':<16} {build_s:>8.1f} {rate(total_rec, build_s)}   (wall, CLI process)",
        *memory_report(sampled),
    ]
    if has_floor:
        lines.append(
            f"  I/O floor: read CSV {float(r['read_floor_s']):.2f} s + encode/write XPT "  # type: ignore[arg-type]
            f"{float(r['write_floor_s']):.2f} s = {floor:.2f} s; "  # type: ignore[arg-type]
            f"build / floor = {build_s / floor:.1f}x"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="100,1000,10000",
        help="comma-separated subject counts (default 100,1000,10000)",
    )
    parser.add_argument(
        "--keep", type=Path, help="keep raw exports and outputs in this folder (must be new)"
    )
    parser.add_argument(
        "--raw",
        type=Path,
        help="build these raw exports (one size, no simulate) instead of simulating",
    )
    parser.add_argument("--out", type=Path, help="with --raw: the build's output folder")
    parser.add_argument("--no-floor", action="store_true", help="skip the I/O floor")
    parser.add_argument(
        "--timeline", type=Path, help="write the memory timeline (s, RSS, PSS; JSON) here"
    )
    args = parser.parse_args()
    if args.raw is not None:
        os.chdir(ROOT)
        work = Path(tempfile.mkdtemp(prefix="cdiscforge-scale-"))
        try:
            r = run_size(0, work, raw=args.raw.resolve(), out=args.out, floor=not args.no_floor)
            r["subjects"] = _subjects(Path(str(args.out or work / "out0")) / "build.log")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("\n".join(report(r)), flush=True)
        if args.timeline is not None:
            b: Sampled = r["sampled"]  # type: ignore[assignment]
            args.timeline.write_text(json.dumps({"steps": b.fine_rss, "timeline": b.timeline}))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.keep is not None:
        args.keep.mkdir(parents=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="cdiscforge-scale-"))
    os.chdir(ROOT)  # the CLI's default study resolves from the checkout
    results: dict[int, dict[str, object]] = {}
    try:
        for n in sizes:
            results[n] = run_size(n, work)
            print("\n".join(report(results[n])), flush=True)
            if args.keep is None:
                for sub in (f"raw{n}", f"out{n}", f"floor{n}"):
                    shutil.rmtree(work / sub, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if 1000 in results and 10000 in results:
        ratio = float(results[10000]["build_s"]) / float(results[1000]["build_s"])  # type: ignore[arg-type]
        print(f"t(10k) / t(1k) = {ratio:.2f} (linear would be 10)")


if __name__ == "__main__":
    main()
