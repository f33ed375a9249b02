"""Real-world mess, applied to clean export frames at the profile's documented rates.

Each kind draws from its own random stream and only rewrites the records it picks, so turning
a kind off leaves every other value byte-identical. `minimum` in the profile guarantees that
many occurrences (per column, in the first chunk) so even a 15-subject export shows each kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def pick(
    rng: np.random.Generator, eligible: np.ndarray, rate: float, minimum: int, first: bool
) -> np.ndarray:
    """Rows to mess up: each eligible row with probability `rate`, topped up to `minimum`."""
    chosen = eligible & (rng.random(len(eligible)) < rate)
    if first and chosen.sum() < minimum:
        spare = rng.permutation(np.flatnonzero(eligible & ~chosen))
        chosen[spare[: minimum - int(chosen.sum())]] = True
    return chosen


def _columns(frames: dict[str, pd.DataFrame], column: str) -> list[str]:
    return [form for form, frame in frames.items() if column in frame.columns]


def partial_dates(
    frames: dict[str, pd.DataFrame], cfg: dict[str, Any], rng: np.random.Generator, first: bool
) -> None:
    """`25-SEP-2018` -> `UN-SEP-2018` (day unknown) or `UNK-UNK-2018` (day and month unknown).

    In the first chunk the first pick of each column is day-unknown and the second
    month-unknown, so both shapes appear whenever the kind is on.
    """
    share = float(cfg.get("unknown_month_share", 0.3))
    minimum = int(cfg.get("minimum", 0))
    for column, rate in cfg["rates"].items():
        for form in _columns(frames, column):
            values = frames[form][column]
            chosen = pick(rng, values.notna().to_numpy(), float(rate), minimum, first)
            idx = np.flatnonzero(chosen)
            month_unknown = rng.random(len(idx)) < share
            if first and len(idx):
                month_unknown[0] = False
                if len(idx) > 1:
                    month_unknown[1] = True
            old = values.iloc[idx]
            new = np.where(month_unknown, "UNK-UNK-" + old.str.slice(-4), "UN" + old.str.slice(2))
            frames[form].loc[frames[form].index[idx], column] = new


def coded_value_variants(
    frames: dict[str, pd.DataFrame], cfg: dict[str, Any], rng: np.random.Generator, first: bool
) -> None:
    """`Female` -> `female` / `FEMALE` / ` Female` / `Female ` (or a synonym, e.g. IV)."""
    replacements = cfg.get("replacements", {})
    minimum = int(cfg.get("minimum", 0))
    for column in cfg["columns"]:
        for form in _columns(frames, column):
            values = frames[form][column]
            chosen = pick(rng, values.notna().to_numpy(), float(cfg["rate"]), minimum, first)
            idx = np.flatnonzero(chosen)
            old = values.iloc[idx].reset_index(drop=True)
            kinds = rng.integers(0, 5, len(idx))
            mapping = replacements.get(column, {})
            lower = old.str.lower()
            synonym = old.map(mapping).astype("str").fillna(lower) if mapping else lower
            variants = pd.DataFrame(
                {
                    0: old.str.lower(),
                    1: old.str.upper(),
                    2: " " + old,
                    3: old + " ",
                    4: synonym,
                }
            )
            new = variants.to_numpy()[np.arange(len(idx)), kinds]
            frames[form].loc[frames[form].index[idx], column] = new


def non_ascii_text(
    frames: dict[str, pd.DataFrame], cfg: dict[str, Any], rng: np.random.Generator, first: bool
) -> None:
    """Free text with accents (café, naïve, Montréal) where sites typed them."""
    minimum = int(cfg.get("minimum", 0))
    for column, texts in cfg["texts"].items():
        for form in _columns(frames, column):
            values = frames[form][column]
            chosen = pick(rng, values.notna().to_numpy(), float(cfg["rate"]), minimum, first)
            idx = np.flatnonzero(chosen)
            options = np.array(texts, dtype=object)
            frames[form].loc[frames[form].index[idx], column] = options[
                rng.integers(0, len(options), len(idx))
            ]


def long_ae_verbatim(
    ae: pd.DataFrame | None,
    cfg: dict[str, Any],
    rng: np.random.Generator,
    first: bool,
    terms: list[dict[str, Any]],
    columns: dict[str, Any],
    levels: list[str],
) -> None:
    """One verbatim term over 200 characters (SDTM must split it into AETERM + SUPPAE).

    `ae` is the events form named in the profile; `columns` its simulation.yaml column
    sources, which say which column holds the verbatim and which the coding of each level.
    The new verbatim takes the coding of the term whose first level is `coded_as`.
    """
    if not first or ae is None or not len(ae):
        return
    text = " ".join(str(cfg["text"]).split())
    row = ae.index[int(rng.integers(0, len(ae)))]
    by_role = {src: col for col, src in columns.items() if isinstance(src, str)}
    if "verbatim" in by_role:
        ae.loc[row, by_role["verbatim"]] = text
    coded_as = cfg.get("coded_as")
    term = next((t for t in terms if levels and t[levels[0]][0] == coded_as), None)
    if term is not None:
        for level in levels:
            for part, value in (("name", term[level][0]), ("code", str(term[level][1]))):
                column = by_role.get(f"coding.{level}.{part}")
                if column is not None:
                    ae.loc[row, column] = value


def lab_units(
    rows: pd.DataFrame,
    cfg: dict[str, Any],
    rng: np.random.Generator,
    first: bool,
    codes: list[str],
) -> None:
    """Some samples' tests reported by the second lab in its own unit (its second unit)."""
    tests = [codes.index(c) for c in cfg["tests"] if c in codes]
    eligible = rows["test"].isin(tests).to_numpy()
    chosen = pick(rng, eligible, float(cfg["rate"]), int(cfg.get("minimum", 0)), first)
    rows.loc[chosen, "unit"] = 1


def duplicate_rows(
    frame: pd.DataFrame, cfg: dict[str, Any], rng: np.random.Generator, first: bool
) -> pd.DataFrame:
    """A record sent twice by the lab: an exact copy right after the original."""
    chosen = pick(
        rng, np.ones(len(frame), dtype=bool), float(cfg["rate"]), int(cfg.get("minimum", 0)), first
    )
    return frame.iloc[np.repeat(np.arange(len(frame)), 1 + chosen.astype(np.int64))].reset_index(
        drop=True
    )


def unscheduled_visits(
    day1: np.ndarray,
    follow_up_days: list[int],
    cfg: dict[str, Any],
    rng: np.random.Generator,
    first: bool,
    folder: str,
) -> pd.DataFrame:
    """Subjects seen once between two scheduled follow-up visits (a safety lab check).

    Returns enrolled index `e`, `folder` (UNS1), `date` and `k` (1: first unscheduled visit).
    """
    n = len(day1)
    chosen = np.flatnonzero(
        pick(rng, np.ones(n, dtype=bool), float(cfg["rate"]), int(cfg.get("minimum", 0)), first)
    )
    targets = np.array(sorted(follow_up_days))
    k = rng.integers(0, len(targets) - 1, len(chosen))
    middle = (targets[k] + targets[k + 1]) // 2 - 1
    return pd.DataFrame(
        {
            "e": chosen,
            "folder": f"{folder}1",
            "date": day1[chosen] + middle.astype("timedelta64[D]"),
            "k": 1,
        }
    )
