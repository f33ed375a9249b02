"""Time and memory of refusing hostile spec YAML and of splitting long text for SUPP--.

    python benchmarks/strict_inputs.py

Measures, each in a fresh subprocess (so peak RSS is the case's own): loading the bundled
study (the baseline), rejecting a billion-laughs alias bomb, YAML nested 5,000 and 200,000
levels deep, splitting one 1 MB and one 10 MB text value into SUPP-- pieces
(`cdiscforge.supp.split_series`), and the build's whole path for such an AETERM (engine split
plus SUPPAE records). Prints seconds and peak resident memory per case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASE = textwrap.dedent(
    """
    import json, resource, sys, time, tempfile
    from pathlib import Path
    kind, arg = sys.argv[1], int(sys.argv[2])
    from cdiscforge.errors import SpecError
    from cdiscforge.spec import load_study, load_yaml
    from cdiscforge.supp import split_series
    import pandas as pd
    outcome = ""
    if kind == "study":
        start = time.perf_counter()
        load_study(Path(sys.argv[3]))
        outcome = "loaded"
    elif kind in ("bomb", "deep"):
        if kind == "bomb":
            lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
            prev = "a"
            for name in "bcdefghi":
                lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
                prev = name
            text = "\\n".join(lines) + "\\n"
        else:
            text = "x: " + "[" * arg + "]" * arg + "\\n"
        path = Path(tempfile.mkdtemp()) / "case.yaml"
        path.write_text(text)
        start = time.perf_counter()
        try:
            load_yaml(path)
            outcome = "LOADED"
        except SpecError as exc:
            outcome = exc.problem[:60]
    else:
        words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
                 "tempor incididunt ut labore et dolore magna aliqua ").split()
        text = " ".join(words[i % len(words)] for i in range(arg // 5))[:arg]
        if kind == "split":
            values = pd.Series([text, "short"], dtype="string")
            start = time.perf_counter()
            first, rest = split_series(values)
            outcome = f"{len(rest) + 1} pieces"
        else:  # the build's path: AETERM split by the engine, SUPPAE built from the pieces
            from cdiscforge.buildlog import BuildLog
            from cdiscforge.engine import _split_long_text
            from cdiscforge.supp import build_supp
            study = load_study(Path(sys.argv[3]))
            spec = study.datasets["AE"]
            records = pd.DataFrame({"STUDYID": ["S"], "USUBJID": ["S-1"], "AESEQ": [1.0],
                                    "AETERM": pd.Series([text], dtype="string"),
                                    "_AERELPR": ["x"]})
            build_supp(spec, study, records.head(0), {"_AERELPR": records["_AERELPR"].head(0)},
                       {}, BuildLog())  # warm the SDTMIG metadata cache
            start = time.perf_counter()
            overflow = _split_long_text(spec, records, BuildLog())
            supp = build_supp(spec, study, records, {"_AERELPR": records["_AERELPR"]},
                              overflow, BuildLog())
            outcome = f"{len(supp.frame)} SUPPAE records"
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "outcome": outcome}))
    """
)


def run(kind: str, arg: int = 0) -> dict:
    spec = str(ROOT / "specs" / "nct03691909")
    out = subprocess.run(
        [sys.executable, "-c", CASE, kind, str(arg), spec],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    cases = [
        ("bundled study loads", "study", 0),
        ("alias bomb (9 levels x 9)", "bomb", 0),
        ("nested 5,000 deep", "deep", 5_000),
        ("nested 200,000 deep", "deep", 200_000),
        ("split a 1 MB value", "split", 1_000_000),
        ("split a 10 MB value", "split", 10_000_000),
        ("AETERM 1 MB -> SUPPAE", "supp", 1_000_000),
        ("AETERM 10 MB -> SUPPAE", "supp", 10_000_000),
    ]
    print(f"{'case':32} {'seconds':>9} {'peak MiB':>9}  outcome")
    for label, kind, arg in cases:
        r = run(kind, arg)
        print(f"{label:32} {r['seconds']:9.3f} {r['peak_mib']:9.0f}  {r['outcome']}")


if __name__ == "__main__":
    main()
