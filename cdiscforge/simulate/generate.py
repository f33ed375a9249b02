"""Clinical truth of one chunk of simulated subjects, as raw EDC / lab export frames.

Each chunk of subjects draws from its own random streams (numpy SeedSequence keyed by seed,
chunk index and domain), so the output does not depend on how many chunks came before it in
memory, and switching a mess kind off never changes the clinical values: mess draws from
separate streams (see mess.py). Every frame comes back as text columns in the order of
raw_forms.yaml, ready to be written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from cdiscforge.simulate.formats import edc_date, fixed, hhmm, iso_date, limit_text, parse_hhmm
from cdiscforge.simulate.profile import DATE_SOURCES, MESS_KINDS, Profile

# The clinical domains' stream keys are numbers simulation.yaml's `streams` fixes; mess kinds
# draw from MESS_STREAM, apart from all of them.
MESS_STREAM = 100


def stream(seed: int, chunk: int, *path: int) -> np.random.Generator:
    """An independent generator for (seed, chunk, domain...)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk, *path)))


@dataclass(frozen=True)
class ChunkPlan:
    """Which subjects a chunk holds: enrolled [enrolled_start, +n_enrolled), plus failures."""

    index: int
    enrolled_start: int
    n_enrolled: int
    n_failed: int
    screened_start: int
    total_enrolled: int
    total_screened: int


def cumulative_share(stop: int, total: int, share: float) -> int:
    """round(stop * share), the same for every chunking, so chunk shares add up exactly."""
    return int(np.floor(stop * share + 0.5)) if total else 0


def plan_chunks(profile: Profile, n_enrolled: int) -> list[ChunkPlan]:
    """Split enrolled subjects into chunks; screen failures spread in proportion."""
    ratio = float(profile.sim["enrolment"]["screened_per_enrolled"])
    total_screened = int(np.floor(n_enrolled * ratio + 0.5))
    fail_share = (total_screened - n_enrolled) / n_enrolled if n_enrolled else 0.0
    size = int(profile.sim["chunk_subjects"])
    plans = []
    for index, start in enumerate(range(0, n_enrolled, size)):
        stop = min(start + size, n_enrolled)
        fails_before = cumulative_share(start, n_enrolled, fail_share)
        fails = cumulative_share(stop, n_enrolled, fail_share) - fails_before
        plans.append(
            ChunkPlan(
                index=index,
                enrolled_start=start,
                n_enrolled=stop - start,
                n_failed=fails,
                screened_start=start + fails_before,
                total_enrolled=n_enrolled,
                total_screened=total_screened,
            )
        )
    return plans


def allocate(rng: np.random.Generator, n: int, weights: dict[str, float]) -> np.ndarray:
    """Exactly proportional labels (largest remainder), in random order.

    The paper reports counts (14 female, 1 male); random draws would miss them at N=15.
    """
    labels = np.array(list(weights), dtype=object)
    w = np.array(list(weights.values()), dtype=np.float64)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    remainder = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:remainder]] += 1
    return rng.permutation(np.repeat(labels, counts))


def choose(rng: np.random.Generator, n: int, weights: dict[str, float]) -> np.ndarray:
    labels = np.array(list(weights), dtype=object)
    w = np.array(list(weights.values()), dtype=np.float64)
    return labels[rng.choice(len(labels), size=n, p=w / w.sum())]


def from_quantiles(u: np.ndarray, points: list[list[float]]) -> np.ndarray:
    """Piecewise-linear inverse CDF through the profile's (probability, value) points."""
    probs, values = zip(*points, strict=True)
    return np.interp(u, probs, values)


def _days(value: date | str) -> np.datetime64:
    return np.datetime64(str(value), "D")


def _minutes(rng: np.random.Generator, window: list[str], n: int, step: int = 5) -> np.ndarray:
    lo, hi = (parse_hhmm(t) for t in window)
    return lo + step * rng.integers(0, (hi - lo) // step + 1, size=n)


def _text(values: Any, n: int | None = None) -> pd.Series:
    if n is not None and np.ndim(values) == 0:
        values = [values] * n
    return pd.Series(values, dtype="str")


@dataclass
class Cohort:
    """The screened subjects of a chunk and, for the enrolled, their schedule."""

    subject: np.ndarray  # SUBJECT ids, screened order
    enrolled: np.ndarray  # bool per screened subject
    sex: np.ndarray  # EDC sex text per screened subject (edc_text female / male)
    scrndat: np.ndarray  # datetime64[D]
    day1: np.ndarray  # study day 1 (reference date) per enrolled subject
    visit_dates: dict[str, np.ndarray] = field(default_factory=dict)  # folder -> per enrolled
    unscheduled: pd.DataFrame | None = None  # enrolled index, date (mess)

    @property
    def enrolled_ids(self) -> np.ndarray:
        return self.subject[self.enrolled]


class ChunkGenerator:
    """Generates every declared form for one chunk; each kind returns a frame in the column
    order of raw_forms.yaml, its columns filled as simulation.yaml's `columns` says."""

    def __init__(self, profile: Profile, plan: ChunkPlan, seed: int) -> None:
        self.p = profile
        self.sim = profile.sim
        self.plan = plan
        self.seed = seed
        self.study = str(self.sim["study_id"])
        self.site = str(self.sim["site"]["number"])
        self.visits = {v["edc_folder"]: v for v in profile.design["visits"]}
        self.text = self.sim["edc_text"]
        self.streams = {str(k): int(v) for k, v in self.sim["streams"].items()}
        offsets = self.sim["defaults"].get("stream_offsets") or {}
        self.offsets = {self.streams[k]: int(v) for k, v in offsets.items()}
        self._failure_pick: np.ndarray | None = None

    def rng(self, *path: int) -> np.random.Generator:
        """The stream of a domain: seed + the domain's offset (simulation.yaml), chunk, path.

        Offsets let a seed search pick each domain's draws on their own (when two forms are
        independent calibration targets); every seed gets the same offsets, so seeds stay
        comparable.
        """
        return stream(self.seed + self.offsets.get(path[0], 0), self.plan.index, *path)

    def form_rng(self, spec: Mapping[str, Any]) -> np.random.Generator:
        """A form's own stream, `stream: [domain, sub-stream...]` in simulation.yaml."""
        domain, *rest = spec["stream"]
        return self.rng(self.streams[domain], *(int(x) for x in rest))

    def constant(self, source: Mapping[str, Any]) -> str:
        """`{text: <edc_text key>}` or `{value: <literal>}` as the EDC writes it."""
        if "text" in source:
            return str(self.text[source["text"]])
        return str(source["value"])

    def _frame(
        self, form: str, n: int, subjects: np.ndarray, values: Mapping[str, Any]
    ) -> pd.DataFrame:
        """A contract-ordered frame: each raw column filled from the value its simulation.yaml
        source names (a role the kind produced, a column name in per_subject forms, or a
        constant); raw columns without a source stay empty."""
        sources = self.p.sim["forms"][form]["columns"]
        data: dict[str, pd.Series] = {}
        for name in self.p.form_columns(form):
            source = sources.get(name)
            if isinstance(source, Mapping) and ("text" in source or "value" in source):
                data[name] = _text(self.constant(source), n)
                continue
            key = name if isinstance(source, Mapping) else source
            if key == "study":
                data[name] = _text(self.study, n)
            elif key == "site":
                data[name] = _text(self.site, n)
            elif key == "subject":
                data[name] = _text(subjects)
            elif key is not None and key in values:
                value = values[key]
                series = value if isinstance(value, pd.Series) else _text(value, n)
                data[name] = series.reset_index(drop=True).astype("str")
            else:
                data[name] = pd.Series([None] * n, dtype="str")
        return pd.DataFrame(data)

    # ---- subjects -------------------------------------------------------------------------
    def cohort(self) -> Cohort:
        plan, sim = self.plan, self.sim
        rng = self.rng(self.streams["subjects"])
        n = plan.n_enrolled + plan.n_failed
        width = max(int(self.sim.get("subject_id_width", 3)), len(str(plan.total_screened)))
        numbers = np.arange(plan.screened_start + 1, plan.screened_start + n + 1)
        subject = np.char.add(f"{self.site}-", np.char.zfill(numbers.astype(str), width))
        enrolled = np.ones(n, dtype=bool)
        enrolled[rng.permutation(n)[: plan.n_failed]] = False

        icdat = self._consent_dates(n)
        scrndat = icdat + rng.integers(0, 4, size=n).astype("timedelta64[D]")

        subjects = sim["subjects"]
        sex = np.empty(n, dtype=object)
        sex[enrolled] = allocate(rng, plan.n_enrolled, subjects["sex"])
        female = float(subjects.get("screen_failure_sex_female", 0.5))
        sex[~enrolled] = np.where(
            rng.random(plan.n_failed) < female, self.text["female"], self.text["male"]
        )

        screen = self.visits[self._folder_of_first_visit()]
        jitter = rng.integers(-screen["window_before"], screen["window_after"] + 1, plan.n_enrolled)
        day1 = scrndat[enrolled] + (1 - screen["target_day"] + jitter).astype("timedelta64[D]")
        return Cohort(subject=subject, enrolled=enrolled, sex=sex, scrndat=scrndat, day1=day1)

    def _folder_of_first_visit(self) -> str:
        return min(self.visits.values(), key=lambda v: v["VISITNUM"])["edc_folder"]

    def _consent_dates(self, n: int) -> np.ndarray:
        """Consent dates spread evenly over the enrolment period, in subject-number order."""
        first = _days(self.sim["enrolment"]["first_consent"])
        span = (_days(self.sim["enrolment"]["last_consent"]) - first).astype(np.int64)
        numbers = np.arange(self.plan.screened_start, self.plan.screened_start + n)
        position = numbers / max(self.plan.total_screened - 1, 1)
        return first + np.floor(position * span).astype("timedelta64[D]")

    def _consent(self, c: Cohort) -> np.ndarray:
        return self._consent_dates(len(c.subject))

    def screening(self, form: str, spec: Mapping[str, Any], c: Cohort) -> pd.DataFrame:
        """One row per screened subject; each screen failure picks a failure by weight."""
        rng = self.form_rng(spec)
        n = len(c.subject)
        failures = self.sim["enrolment"]["screen_failures"]
        pick = rng.choice(len(failures), size=n, p=_weights([f["weight"] for f in failures]))
        self._failure_pick = np.where(c.enrolled, -1, pick)
        values: dict[str, Any] = {
            "screening_date": edc_date(c.scrndat),
            "consent_date": edc_date(self._consent(c)),
            "enrolled": np.where(c.enrolled, self.text["yes"], self.text["no"]),
        }
        for role in spec["columns"].values():
            if isinstance(role, str) and role.startswith("failure."):
                key = role.split(".", 1)[1]
                chosen = np.array([f.get(key) for f in failures], dtype=object)[pick]
                values[role] = pd.Series(np.where(c.enrolled, None, chosen), dtype="str")
        return self._frame(form, n, c.subject, values)

    def demographics(self, form: str, spec: Mapping[str, Any], c: Cohort) -> pd.DataFrame:
        """One row per screened subject: birth date from the age quantiles, exact-proportion
        allocations among the enrolled (weighted draws for screen failures)."""
        rng = self.form_rng(spec)
        n = len(c.subject)
        age = from_quantiles(rng.random(n), spec["age_quantiles"])
        birth = self._consent(c) - np.floor(age * 365.25).astype("timedelta64[D]")
        allocations = spec.get("allocations") or {}
        drawn = {name: np.empty(n, dtype=object) for name in allocations}
        for name, weights in allocations.items():
            drawn[name][c.enrolled] = allocate(rng, self.plan.n_enrolled, weights)
        for name, weights in allocations.items():
            drawn[name][~c.enrolled] = choose(rng, self.plan.n_failed, weights)
        values: dict[str, Any] = {
            "screening_date": edc_date(c.scrndat),
            "birth_date": edc_date(birth),
            "sex": c.sex,
        }
        values.update({f"allocation.{k}": v for k, v in drawn.items()})
        other_cfg = spec.get("other_text")
        if other_cfg:
            texts = np.array(other_cfg["texts"], dtype=object)
            other = np.where(
                drawn[other_cfg["allocation"]] == other_cfg["when"],
                texts[rng.integers(0, len(texts), n)],
                None,
            )
            values["other_text"] = pd.Series(other, dtype="str")
        return self._frame(form, n, c.subject, values)

    def _last_visit(self, c: Cohort) -> np.ndarray:
        last = c.day1.copy()
        for folder in self.ordered_folders():
            d = c.visit_dates[folder]
            last = np.where(~np.isnat(d) & (d > last), d, last)
        return last

    def _date_source(self, source: Any, c: Cohort, enrolled: bool) -> np.ndarray:
        """A per-subject date a per_subject column names (datetime64[D] per row)."""
        if isinstance(source, Mapping):
            return c.visit_dates[source["visit_date"]]
        if source == "screening_date":
            return c.scrndat[c.enrolled] if enrolled else c.scrndat
        if source == "consent_date":
            consent = self._consent(c)
            return consent[c.enrolled] if enrolled else consent
        if source == "reference_date":
            return c.day1
        return self._last_visit(c)  # last_visit_date

    def per_subject(self, form: str, spec: Mapping[str, Any], c: Cohort) -> pd.DataFrame:
        """One row per subject (screened or enrolled), each column from a generator of
        simulation.yaml, drawn in the order the columns are listed there."""
        enrolled = spec.get("subjects", "enrolled") == "enrolled"
        ids = c.enrolled_ids if enrolled else c.subject
        n = len(ids)
        # a form without `stream` draws nothing (load_profile rejects drawing generators there)
        rng = self.form_rng(spec) if "stream" in spec else stream(self.seed, self.plan.index)
        minutes: dict[str, np.ndarray] = {}
        values: dict[str, Any] = {}
        for column, src in spec["columns"].items():
            if isinstance(src, str):
                if src in DATE_SOURCES:
                    values[src] = edc_date(self._date_source(src, c, enrolled))
                continue
            if "text" in src or "value" in src:
                continue
            if "visit_date" in src:
                out: Any = edc_date(self._date_source(src, c, enrolled))
            elif "years_before" in src:
                years = from_quantiles(rng.random(n), src["quantiles"])
                ref = self._date_source(src["years_before"], c, enrolled)
                out = edc_date(ref - np.floor(years * 365.25).astype("timedelta64[D]"))
            elif "share" in src:
                hit = rng.random(n) < src["share"]
                out = np.where(hit, self.constant(src["then"]), self.constant(src["else"]))
            elif "pick" in src:
                texts = np.array(src["pick"], dtype=object)
                out = texts[rng.integers(0, len(texts), n)]
            elif "normal" in src:
                cfg = src["normal"]
                drawn = rng.normal(cfg["mean"], cfg["sd"], n)
                out = fixed(np.maximum(drawn, cfg.get("min", -np.inf)), int(src["decimals"]))
            elif "time_between" in src:
                minutes[column] = _minutes(rng, src["time_between"], n)
                out = hhmm(minutes[column] % 1440)
            elif "minutes_after" in src:
                lo, hi = src["minutes"]
                step = rng.integers(lo, hi + 1, size=n)
                minutes[column] = minutes[src["minutes_after"]] + step
                out = hhmm(minutes[column] % 1440)
            elif "date" in src:
                days = (minutes[src["plus_days_of"]] // 1440).astype("timedelta64[D]")
                out = edc_date(self._date_source(src["date"], c, enrolled) + days)
            else:  # sequence
                start = self.plan.enrolled_start if enrolled else self.plan.screened_start
                seq = np.arange(start + 1, start + n + 1)
                out = np.char.add(
                    str(src.get("prefix", "")), np.char.zfill(seq.astype(str), int(src["width"]))
                )
            values[column] = out
        return self._frame(form, n, ids, values)

    # ---- schedule -------------------------------------------------------------------------
    def schedule(self, c: Cohort) -> None:
        """Visit dates per enrolled subject; missed visits (per the attendance table) are NaT."""
        rng = self.rng(self.streams["visits"])
        att = self.sim["attendance"]
        ref = float(att["reference_enrolled"])
        n = self.plan.n_enrolled
        start, stop = self.plan.enrolled_start, self.plan.enrolled_start + n
        first = self._folder_of_first_visit()
        for folder, visit in sorted(self.visits.items(), key=lambda kv: kv[1]["VISITNUM"]):
            t = int(visit["target_day"])
            jitter = rng.integers(-visit["window_before"], visit["window_after"] + 1, size=n)
            offset = t - 1 if t > 0 else t
            dates = c.day1 + (offset + jitter).astype("timedelta64[D]")
            if folder == first:
                dates = c.scrndat[c.enrolled].copy()
            if folder in att["attended"]:
                share = float(att["attended"][folder]) / ref
                total = self.plan.total_enrolled
                attended = cumulative_share(stop, total, share) - cumulative_share(
                    start, total, share
                )
                missed = rng.permutation(n)[: n - attended]
                dates[missed] = np.datetime64("NaT")
            c.visit_dates[folder] = dates

    def ordered_folders(self) -> list[str]:
        return [f for f, _ in sorted(self.visits.items(), key=lambda kv: kv[1]["VISITNUM"])]

    def visit_dates(self, form: str, spec: Mapping[str, Any], c: Cohort) -> pd.DataFrame:
        """One row per attended visit; screen failures have their screening visit only."""
        ids_enr = c.enrolled_ids
        parts = []
        first = self._folder_of_first_visit()
        for order, folder in enumerate(self.ordered_folders()):
            dates = c.visit_dates[folder]
            keep = ~np.isnat(dates)
            parts.append(
                pd.DataFrame({"s": ids_enr[keep], "o": order, "f": folder, "d": dates[keep]})
            )
            if folder == first:
                fail = ~c.enrolled
                parts.append(
                    pd.DataFrame(
                        {"s": c.subject[fail], "o": order, "f": folder, "d": c.scrndat[fail]}
                    )
                )
        if c.unscheduled is not None and len(c.unscheduled):
            u = c.unscheduled
            parts.append(
                pd.DataFrame({"s": ids_enr[u["e"]], "o": 99, "f": u["folder"], "d": u["date"]})
            )
        rows = pd.concat(parts, ignore_index=True).sort_values(["s", "d", "o"], kind="stable")
        values = {"folder": rows["f"].to_numpy(), "date": edc_date(rows["d"].to_numpy())}
        return self._frame(form, len(rows), rows["s"].to_numpy(), values)

    # ---- per visit x item of an item table ----------------------------------------------------
    def item_counts(self, form: str, spec: Mapping[str, Any], c: Cohort) -> pd.DataFrame:
        """One row per enrolled subject, attended visit (from `first_day` on), item of the item
        table and assessment counting that item.

        Each assessment's baseline count comes from its quantile table (assessments joined by a
        Gaussian copula); a visit's count responds by the remaining fraction. Each subject has
        a fixed propensity per item, so the same items stay positive across visits (as in real
        disease); a visit's count picks the most involved items.
        """
        rng = self.form_rng(spec)
        table = spec["items"]
        items = self.p.tables[table["file"]][table["key"]]
        assessments = spec["assessments"]
        n_a = len(assessments)
        n = self.plan.n_enrolled
        n_j = len(items)
        ok = [np.array([bool(j[a["counted"]]) for j in items]) for a in assessments]
        kinds = [self.text[a["text"]] for a in assessments]

        z = rng.standard_normal((n, n_a))
        rho = float(spec["rho"])
        for a in range(1, n_a):
            z[:, a] = rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, a]
        u = ndtr(z)
        base_raw = [
            np.rint(from_quantiles(u[:, a], assessments[a]["baseline_quantiles"]))
            for a in range(n_a)
        ]
        factor = np.exp(rng.normal(0.0, spec["subject_sd"], n))
        non_resp = np.stack(
            [rng.random(n) < float(a["non_responder_fraction"]) for a in assessments], axis=1
        )

        ids = [j[table["id"]] for j in items]
        replaced = np.zeros((n, n_j), dtype=bool)
        candidates = [ids.index(x) for x in spec.get("unassessable_items", [])]
        has_repl = rng.random(n) < spec.get("unassessable_fraction", 0.0)
        if candidates:
            which = np.array(candidates)[rng.integers(0, len(candidates), n)]
            replaced[np.arange(n)[has_repl], which[has_repl]] = True

        propensity = rng.random((n, n_j))
        ranks = []
        for counted in ok:
            key = np.where(counted[None, :] & ~replaced, propensity, -1.0)
            order = np.argsort(-key, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(n_j)[None, :], axis=1)
            ranks.append(rank)
        avail = [(counted[None, :] & ~replaced).sum(axis=1) for counted in ok]
        base = [np.minimum(base_raw[a], avail[a]) for a in range(n_a)]

        # slots: per item, each assessment counting it, in assessment order
        slot_item = np.array([j for j in range(n_j) for a in range(n_a) if ok[a][j]])
        slot_kind = np.array([a for j in range(n_j) for a in range(n_a) if ok[a][j]])

        remaining = spec["remaining_fraction"]
        level = [float(a["non_responder_level"]) for a in assessments]
        first_day = spec.get("first_day", 1)
        visit_parts = []
        for folder in self.ordered_folders():
            if self.visits[folder]["target_day"] < first_day:
                continue
            dates = c.visit_dates[folder]
            attended = np.flatnonzero(~np.isnat(dates))
            counts = np.empty((n, n_a))
            for a in range(n_a):
                if folder in remaining:
                    frac = np.where(
                        non_resp[:, a], level[a], np.minimum(1.0, remaining[folder] * factor)
                    )
                    counts[:, a] = np.minimum(rng.poisson(base[a] * frac), avail[a])
                else:
                    counts[:, a] = base[a]
            visit_parts.append((folder, attended, dates[attended], counts[attended]))

        subj_idx = np.concatenate([p[1] for p in visit_parts])
        folder_col = np.concatenate([np.full(len(p[1]), p[0], dtype=object) for p in visit_parts])
        date_col = np.concatenate([p[2] for p in visit_parts])
        count_col = np.concatenate([p[3] for p in visit_parts])
        order = np.lexsort(
            (np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(visit_parts)]), subj_idx)
        )
        subj_idx, folder_col, date_col, count_col = (
            subj_idx[order],
            folder_col[order],
            date_col[order],
            count_col[order],
        )

        n_sv, n_slot = len(subj_idx), len(slot_item)
        row_s = np.repeat(subj_idx, n_slot)
        row_j = np.tile(slot_item, n_sv)
        row_k = np.tile(slot_kind, n_sv)
        rank = np.stack(ranks)[row_k, row_s, row_j]
        count = np.repeat(count_col, n_slot, axis=0)[np.arange(n_sv * n_slot), row_k]
        not_eval = replaced[row_s, row_j]
        result_code = np.where(not_eval, 2, np.where(rank < count, 0, 1))

        labels = np.array([j[table["label"]] for j in items], dtype=object)
        date_text = edc_date(date_col).to_numpy()
        results = spec["results"]
        result_text = [self.text[results[k]] for k in ("positive", "negative", "not_evaluable")]
        values = {
            "folder": np.repeat(folder_col, n_slot),
            "date": np.repeat(date_text, n_slot),
            "item": labels[row_j],
            "assessment": np.array(kinds, dtype=object)[row_k],
            "result": np.array(result_text, dtype=object)[result_code],
            "reason": pd.Series(
                np.where(not_eval, spec.get("unassessable_reason"), None), dtype="str"
            ),
        }
        return self._frame(form, n_sv * n_slot, c.enrolled_ids[row_s], values)


def _weights(values: list[float]) -> np.ndarray:
    w = np.asarray(values, dtype=np.float64)
    return w / w.sum()


@dataclass(frozen=True)
class LabCatalogue:
    """lab_tests.yaml as per-test arrays, so a whole column of results is formatted at once."""

    tests: list[dict[str, Any]]

    def array(self, key: str, default: Any = None) -> np.ndarray:
        return np.array([t.get(key, default) for t in self.tests], dtype=object)

    def limits(self, key: str) -> np.ndarray:
        return np.array([np.nan if t.get(key) is None else t[key] for t in self.tests], float)

    def ref(self, bound: str) -> np.ndarray:
        """Reference limit in the first unit, shape (tests, 2) for sex F, M (NaN when open)."""
        out = np.full((len(self.tests), 2), np.nan)
        for i, t in enumerate(self.tests):
            rr = t.get("ref_range", {})
            for k, sex in enumerate(("F", "M")):
                value = rr["by_sex"][sex].get(bound) if "by_sex" in rr else rr.get(bound)
                out[i, k] = np.nan if value is None else value
        return out

    def unit(self, which: int, key: str) -> np.ndarray:
        """Per test, attribute of its unit number `which` (falling back to the first unit)."""
        return np.array(
            [t["units"][min(which, len(t["units"]) - 1)][key] for t in self.tests], dtype=object
        )


class ClinicalGenerator(ChunkGenerator):
    """Adds the lab transfer (per sample x test of a catalogue) and events to the EDC forms."""

    def generate(self, form: str, cohort: Cohort, switches: dict[str, bool]) -> pd.DataFrame:
        """One declared form's rows for this chunk, by its kind."""
        spec = self.sim["forms"][form]
        kind = spec["kind"]
        if kind == "lab_transfer":
            return self.lab_transfer(form, spec, cohort, switches)
        method = getattr(self, kind)
        return method(form, spec, cohort)

    def catalogue_of(self, spec: Mapping[str, Any]) -> LabCatalogue:
        table = spec["catalogue"]
        return LabCatalogue(list(self.p.tables[table["file"]][table["key"]]))

    # ---- labs -----------------------------------------------------------------------------
    def lab_transfer(
        self, form: str, spec: Mapping[str, Any], c: Cohort, switches: dict[str, bool]
    ) -> pd.DataFrame:
        """The lab vendor's transfer, with the lab mess kinds (units, censoring, resends)."""
        from cdiscforge.simulate import mess as mess_kinds  # mess.py needs nothing from here

        cfg = self.sim["mess"]
        first = self.plan.index == 0
        catalogue = self.catalogue_of(spec)
        unscheduled = switches["unscheduled_visit"]
        rows = self.lab_values(
            spec, catalogue, c, self.mess_rng("unscheduled_visit") if unscheduled else None
        )
        if switches["lab_units"]:
            codes = [t["LBTESTCD"] for t in catalogue.tests]
            mess_kinds.lab_units(rows, cfg["lab_units"], self.mess_rng("lab_units"), first, codes)
        lab = self.lab_form(form, spec, catalogue, c, rows, censor=switches["censored_results"])
        if switches["duplicate_lab_record"]:
            lab = mess_kinds.duplicate_rows(
                lab, cfg["duplicate_lab_record"], self.mess_rng("duplicate_lab_record"), first
            )
        return lab

    def mess_rng(self, kind: str) -> np.random.Generator:
        """The stream of one mess kind (apart from every clinical stream)."""
        return self.rng(MESS_STREAM, MESS_KINDS.index(kind))

    def lab_values(
        self,
        labs: Mapping[str, Any],
        catalogue: LabCatalogue,
        c: Cohort,
        mess_rng: np.random.Generator | None,
    ) -> pd.DataFrame:
        """Numeric lab results in standard units: one row per sample and test.

        Baseline (`baseline_folder`) is the subject's level; other samples vary around it by
        the test's within-subject SD plus the profile's shift for that visit. Unscheduled
        samples (a mess kind) draw from the mess stream so clean values never move.
        """
        rng = self.form_rng(labs)
        model = labs["model"]
        codes = [t["LBTESTCD"] for t in catalogue.tests]
        n_t = len(codes)
        n_s = len(c.subject)
        male = c.sex == self.text["male"]

        base = np.empty((n_s, n_t))
        z = rng.standard_normal((n_s, n_t))
        within = np.array([model[k].get("within_sd", 0.0) for k in codes])
        for i, k in enumerate(codes):
            m = model[k]
            if "mean" in m:
                base[:, i] = np.maximum(m["mean"] + m["sd"] * z[:, i], 1.0)
            else:
                med = m["median"]
                median = np.where(male, med["M"], med["F"]) if isinstance(med, dict) else med
                base[:, i] = median * np.exp(m["sd_log"] * z[:, i])

        enrolled_pos = np.flatnonzero(c.enrolled)
        visitnum = {f: int(v["VISITNUM"]) for f, v in self.visits.items()}
        first = self._folder_of_first_visit()
        parts = []
        for folder in labs["sample_folders"]:
            dates = c.visit_dates[folder]
            keep = ~np.isnat(dates)
            parts.append(
                pd.DataFrame({"s": enrolled_pos[keep], "folder": folder, "date": dates[keep]})
            )
            if folder == first:
                fail = np.flatnonzero(~c.enrolled)
                parts.append(pd.DataFrame({"s": fail, "folder": folder, "date": c.scrndat[fail]}))
        samples = pd.concat(parts, ignore_index=True)
        samples["vnum"] = samples["folder"].map(visitnum).astype(np.int64)
        eps = rng.standard_normal((len(samples), n_t))
        samples["minutes"] = _minutes(rng, labs["collection_time"], len(samples))
        if c.unscheduled is not None and len(c.unscheduled) and mess_rng is not None:
            u = c.unscheduled
            extra = pd.DataFrame(
                {
                    "s": enrolled_pos[u["e"].to_numpy()],
                    "folder": u["folder"].to_numpy(),
                    "date": u["date"].to_numpy(),
                    "vnum": 90 + u["k"].to_numpy(),
                }
            )
            extra["minutes"] = _minutes(mess_rng, labs["collection_time"], len(extra))
            eps = np.vstack([eps, mess_rng.standard_normal((len(extra), n_t))])
            samples = pd.concat([samples, extra], ignore_index=True)

        shifts = np.zeros((len(samples), n_t))
        for i, k in enumerate(codes):
            shift = model[k].get("shift", {})
            shifts[:, i] = samples["folder"].map(shift).fillna(0.0).to_numpy(dtype=float)
        is_base = (samples["folder"] == labs["baseline_folder"]).to_numpy()
        subject_sd = np.array([model[k].get("subject_shift_sd", 0.0) for k in codes])
        subject_shift = rng.standard_normal((n_s, n_t)) * subject_sd[None, :]
        log_factor = shifts + subject_shift[samples["s"].to_numpy()] + within[None, :] * eps
        factor = np.where(is_base[:, None], 1.0, np.exp(log_factor))
        values = base[samples["s"].to_numpy()] * factor

        # screen failures' screening values the profile pins (e.g. the failed haemoglobin)
        pick = self._failure_pick
        if pick is not None:
            failures = self.sim["enrolment"]["screen_failures"]
            s_idx = samples["s"].to_numpy()
            for f_i, failure in enumerate(failures):
                for code, value in failure.get("screening_labs", {}).items():
                    rows = (pick[s_idx] == f_i) & (samples["folder"] == first).to_numpy()
                    values[rows, codes.index(code)] = value
        self._meet_lab_entry_criterion(c, samples, values, eps, codes, first)

        n_rows = len(samples) * n_t
        rows = pd.DataFrame(
            {
                "s": np.repeat(samples["s"].to_numpy(), n_t),
                "folder": np.repeat(samples["folder"].to_numpy(), n_t),
                "date": np.repeat(samples["date"].to_numpy(), n_t),
                "vnum": np.repeat(samples["vnum"].to_numpy(), n_t),
                "minutes": np.repeat(samples["minutes"].to_numpy(), n_t),
                "test": np.tile(np.arange(n_t), len(samples)),
                "value": values.reshape(n_rows),
                "unit": np.zeros(n_rows, dtype=np.int64),
            }
        )
        return rows.sort_values(["s", "date", "vnum", "test"], kind="stable", ignore_index=True)

    def _meet_lab_entry_criterion(
        self,
        c: Cohort,
        samples: pd.DataFrame,
        values: np.ndarray,
        eps: np.ndarray,
        codes: list[str],
        first: str,
    ) -> None:
        """Enrolled subjects pass the lab entry criterion at screening (any of several tests).

        Where none holds, the first test is set just above its threshold, scaled by the
        sample's own noise draw so no new random numbers shift the clean streams. Only
        screening values change: baseline and later values (the calibrated ones) stay put.
        """
        rules = self.sim["enrolment"].get("screening_lab_entry_any") or []
        if not rules:
            return
        s_idx = samples["s"].to_numpy()
        rows = np.flatnonzero((samples["folder"] == first).to_numpy() & c.enrolled[s_idx])
        male = c.sex[s_idx[rows]] == self.text["male"]
        met = np.zeros(len(rows), dtype=bool)
        thresholds = []
        for rule in rules:
            above = rule["above"]
            limit = np.where(male, above["M"], above["F"]) if isinstance(above, dict) else above
            limit = np.broadcast_to(np.asarray(limit, dtype=float), rows.shape)
            thresholds.append(limit)
            met |= values[rows, codes.index(rule["LBTESTCD"])] > limit
        col = codes.index(rules[0]["LBTESTCD"])
        fix = rows[~met]
        values[fix, col] = thresholds[0][~met] * (1.05 + 0.5 * ndtr(eps[fix, col]))

    def lab_form(
        self,
        form: str,
        spec: Mapping[str, Any],
        cat: LabCatalogue,
        c: Cohort,
        rows: pd.DataFrame,
        *,
        censor: bool,
    ) -> pd.DataFrame:
        """Lab transfer text: vendor code/name/unit, result as printed, unit-converted range."""
        t = rows["test"].to_numpy()
        u = rows["unit"].to_numpy()
        f0 = cat.unit(0, "to_standard").astype(float)
        f1 = cat.unit(1, "to_standard").astype(float)
        to_std = np.where(u == 0, f0[t], f1[t])
        scale = f0[t] / to_std  # first-unit numbers -> this row's unit
        decimals = cat.array("decimals").astype(np.int64)[t] + np.maximum(
            0, np.rint(np.log10(to_std / f0[t]))
        ).astype(np.int64)
        value = rows["value"].to_numpy() / to_std
        result = fixed(value, decimals).to_numpy(dtype=object)
        if censor:
            # limits printed once per test and unit, then picked per row
            for key, sign in (("lloq", "<"), ("uloq", ">")):
                limit = cat.limits(key)
                labels = np.array(
                    [
                        [f"{sign}{limit_text(x * f0[i] / f)}" for f in (f0[i], f1[i])]
                        for i, x in enumerate(limit)
                    ],
                    dtype=object,
                )
                bound = limit[t] * scale
                beyond = value < bound if key == "lloq" else value > bound
                result[beyond] = labels[t[beyond], np.minimum(u[beyond], 1)]
        sex = (c.sex[rows["s"].to_numpy()] == self.text["male"]).astype(np.int64)
        ref_lo = cat.ref("low")[t, sex] * scale
        ref_hi = cat.ref("high")[t, sex] * scale
        unit_text = np.where(u == 0, cat.unit(0, "unit")[t], cat.unit(1, "unit")[t])
        labid = np.where(
            u == 0,
            np.array([x[0] for x in cat.unit(0, "labs")], dtype=object)[t],
            np.array([x[0] for x in cat.unit(1, "labs")], dtype=object)[t],
        )
        subj_digits = np.char.replace(c.subject.astype(str), "-", "")
        accession = np.char.add(
            np.char.add(str(spec.get("accession_prefix", "")), subj_digits[rows["s"].to_numpy()]),
            np.char.add("-", np.char.zfill(rows["vnum"].to_numpy().astype(str), 2)),
        )
        labvisit_map = {f: v.get("lab_visit") for f, v in self.visits.items()}
        unscheduled_label = self.p.design["unscheduled"]["lab_visit"]
        labvisit = rows["folder"].map(labvisit_map).fillna(unscheduled_label)
        values = {
            "accession": accession,
            "visit_label": labvisit.to_numpy(),
            "date": iso_date(rows["date"].to_numpy()),
            "time": hhmm(rows["minutes"].to_numpy()),
            "lab_id": labid,
            "test_code": cat.array("vendor_code")[t],
            "test_name": cat.array("vendor_name")[t],
            "result": result,
            "unit": unit_text,
            "ref_low": fixed(ref_lo, decimals),
            "ref_high": fixed(ref_hi, decimals),
            "specimen": cat.array("vendor_specimen")[t],
        }
        return self._frame(form, len(rows), c.subject[rows["s"].to_numpy()], values)

    # ---- events ---------------------------------------------------------------------------
    def events(self, form: str, spec: Mapping[str, Any], c: Cohort) -> pd.DataFrame:
        """Any number of events per enrolled subject (Poisson), each a coded term with onset,
        duration, ongoing flag and the form's weighted choices (drawn in the order listed)."""
        rng = self.form_rng(spec)
        cfg = spec
        terms = cfg["terms"]
        n = self.plan.n_enrolled
        per_subject = rng.poisson(cfg["per_subject_mean"], n)
        e = np.repeat(np.arange(n), per_subject)
        m = len(e)
        term = rng.choice(len(terms), size=m, p=_weights([x["weight"] for x in terms]))
        n_verbatim = np.array([len(x["verbatim"]) for x in terms])
        pick = np.floor(rng.random(m) * n_verbatim[term]).astype(np.int64)
        verbatim = np.array([v for x in terms for v in x["verbatim"]], dtype=object)
        first_v = np.concatenate([[0], np.cumsum(n_verbatim)[:-1]])
        lo = np.array([x.get("onset_days", [1, cfg["onset_day_max"]])[0] for x in terms])
        hi = np.array([x.get("onset_days", [1, cfg["onset_day_max"]])[1] for x in terms])
        onset = lo[term] + np.floor(rng.random(m) * (hi[term] - lo[term] + 1)).astype(np.int64)
        offset = np.where(onset > 0, onset - 1, onset)
        start = c.day1[e] + offset.astype("timedelta64[D]")
        d_lo, d_hi = cfg["duration_days"]
        end = start + rng.integers(d_lo, d_hi + 1, m).astype("timedelta64[D]")
        ongoing = rng.random(m) < cfg["ongoing_fraction"]
        end = np.where(ongoing, np.datetime64("NaT"), end)
        choices = {name: choose(rng, m, w) for name, w in (cfg.get("choices") or {}).items()}
        order = np.lexsort((start, e))
        e, term, start, end, ongoing, pick = (
            e[order],
            term[order],
            start[order],
            end[order],
            ongoing[order],
            pick[order],
        )
        spid = np.arange(m) - np.concatenate([[0], np.cumsum(per_subject)[:-1]])[e] + 1
        values: dict[str, Any] = {f"choice.{k}": v[order] for k, v in choices.items()}
        for level in cfg.get("coding_levels") or []:
            names = np.array([x[level][0] for x in terms], dtype=object)
            codes = np.array([str(x[level][1]) for x in terms], dtype=object)
            values[f"coding.{level}.name"] = names[term]
            values[f"coding.{level}.code"] = codes[term]
        outcome = cfg.get("outcome") or {}
        values.update(
            {
                "sequence": spid.astype(str),
                "verbatim": verbatim[first_v[term] + pick],
                "start_date": edc_date(start),
                "end_date": edc_date(end),
                "ongoing": np.where(ongoing, self.text["yes"], self.text["no"]),
            }
        )
        if outcome:
            values["outcome"] = np.where(
                ongoing, self.text[outcome["ongoing"]], self.text[outcome["ended"]]
            )
        return self._frame(form, m, c.enrolled_ids[e], values)
