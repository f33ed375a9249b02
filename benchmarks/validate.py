"""Time and peak memory of `cdiscforge validate`, native and GX engines, in one run.

A script that measures, not a test. Each validate runs in its own child process through a
small wrapper process, so the wrapper's RUSAGE_CHILDREN ru_maxrss is that one run's peak RSS.
Targets (issue 11): the CDISC pilot SDTM in <= 5 s; validation <= 20% of a default build;
the 10,000-subject SDTM in <= 60 s and <= 4 GB.

1. pilot: the CDISC pilot SDTM (../shared/reference/cdiscpilot01/sdtm beside the checkout,
   or --pilot); skipped with a message if absent.
2. default: `cdiscforge build` of the bundled study, then validate its output root (SDTM and
   ADaM); the build's timings.json gives validation's share of the build.
3. N subjects (--subjects, default 1000; 10000 is ~8 min and ~14 GB to build): simulated,
   built once (reused from --work if there), then validate its sdtm/ folder. Its build's
   validation share is reported too.

    python benchmarks/validate.py                       # pilot, default build, 1,000 subjects
    python benchmarks/validate.py --subjects 10000 --gx-timeout 900
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PILOT = REPO.parent / "shared" / "reference" / "cdiscpilot01" / "sdtm"
if not PILOT.is_dir():  # a git worktree lives one level deeper than the checkout
    PILOT = REPO.parent.parent / "shared" / "reference" / "cdiscpilot01" / "sdtm"
CLI = [sys.executable, "-m", "cdiscforge.cli"]

# Runs one command, then prints its seconds, peak RSS and return code as JSON on stderr's
# last line (the command's own output goes to files).
WRAPPER = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as out, open(sys.argv[2], "w") as err:
    try:
        limit = float(sys.argv[3])
        rc = subprocess.run(sys.argv[4:], stdout=out, stderr=err, timeout=limit).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round(peak, 1), "rc": rc}))
"""


def measure(cmd: list[str], log: Path, timeout: float = 3600) -> dict:
    """Run `cmd` in a fresh child of a fresh wrapper; its wall seconds and peak RSS."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(out), str(err), str(timeout), *map(str, cmd)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    text = out.read_text(encoding="utf-8", errors="replace")
    inner = re.search(r"\) in ([0-9.]+)s:", text)
    result["validation_seconds"] = float(inner.group(1)) if inner else None
    summary = [line for line in text.splitlines() if line.startswith("validated ")]
    result["summary"] = summary[-1] if summary else err.read_text()[-300:]
    return result


def build_share(out: Path) -> dict:
    timings = json.loads((out / "timings.json").read_text(encoding="utf-8"))
    total = sum(timings.values())
    return {
        "stages": timings,
        "validate_seconds": timings.get("validate"),
        "share": round(timings.get("validate", 0) / total, 3) if total else None,
    }


def ensure_build(work: Path, subjects: int | None) -> tuple[Path, dict]:
    """A build output folder for the default study or `subjects` simulated subjects."""
    if subjects is None:
        out = work / "default"
        measured = measure([*CLI, "build", "--out", out], work / "logs" / "build-default")
        return out, measured
    out = work / f"out{subjects}"
    if (out / "timings.json").is_file():
        return out, {"reused": str(out)}
    raw = work / f"raw{subjects}"
    if not (raw / "demographics.csv").is_file():
        sim = [*CLI, "simulate", "--subjects", subjects, "--seed", 7, "--out", raw]
        measure(sim, work / "logs" / f"simulate-{subjects}")
    cmd = [*CLI, "build", "--raw", raw, "--out", out]
    return out, measure(cmd, work / "logs" / f"build-{subjects}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000, help="simulated subjects (1000)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cdiscforge-bench-validate"))
    parser.add_argument("--pilot", type=Path, default=PILOT)
    parser.add_argument("--engines", default="native,gx")
    parser.add_argument(
        "--big-engines",
        help="engines for the N-subject SDTM (default: --engines); GX takes "
        "about a minute per 1,000 subjects here",
    )
    parser.add_argument(
        "--gx-timeout", type=float, default=900, help="seconds before a GX run is abandoned"
    )
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    big_engines = [e.strip() for e in (args.big_engines or args.engines).split(",") if e.strip()]

    targets: list[tuple[str, Path]] = []
    if args.pilot.is_dir():
        targets.append(("pilot SDTM", args.pilot))
    else:
        print(f"pilot SDTM not found at {args.pilot}: skipped", file=sys.stderr)
    default_out, default_build = ensure_build(work, None)
    targets.append(("default build (SDTM+ADaM)", default_out))
    big_out, big_build = ensure_build(work, args.subjects)
    targets.append((f"{args.subjects} subjects SDTM", big_out / "sdtm"))

    rows = []
    for label, path in targets:
        for engine in big_engines if path.parent == big_out else engines:
            timeout = args.gx_timeout if engine == "gx" else 3600
            slug = re.sub(r"\W+", "-", f"{label}-{engine}").strip("-")
            cmd = [*CLI, "validate", path, "--engine", engine, "--report", work / "reports" / slug]
            m = measure(cmd, work / "logs" / slug, timeout)
            rows.append({"target": label, "engine": engine, **m})
            print(
                f"{label:28} {engine:6} wall {m['seconds']:7.1f}s  validation "
                f"{m['validation_seconds'] if m['validation_seconds'] is not None else '-':>6}s  "
                f"peak {m['peak_mb']:7.1f} MB  rc {m['rc']}",
                flush=True,
            )
    shares = {"default build": build_share(default_out), f"{args.subjects} subjects": {}}
    shares[f"{args.subjects} subjects"] = build_share(big_out)
    for name, share in shares.items():
        print(
            f"validation share of the {name} build: {share['share']} "
            f"({share['validate_seconds']} s of stages {share['stages']})"
        )
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": rows,
        "build_shares": shares,
        "builds": {"default": default_build, str(args.subjects): big_build},
    }
    path = work / "validate-benchmark.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
