"""Clinical truth of one chunk of simulated subjects, as raw EDC / lab export frames.

Each chunk of subjects draws from its own random streams (numpy SeedSequence keyed by seed,
chunk index and domain), so the output does not depend on how many chunks came before it in
memory, and switching a mess kind off never changes the clinical values: mess draws from
separate streams (see mess.py). Every frame comes back as text columns in the order of
raw_forms.yaml, ready to be written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from cdiscforge.simulate.formats import edc_date, fixed, hhmm, iso_date, limit_text, parse_hhmm
from cdiscforge.simulate.profile import Profile

# Domain keys of the random streams: fixed numbers, so adding a domain never shifts the others.
SUBJECTS, VISITS, JOINTS, LABS, EVENTS, PROCEDURES = 0, 1, 2, 3, 4, 5
MESS_STREAM = 100
DOMAIN_NAMES = {
    "subjects": SUBJECTS,
    "visits": VISITS,
    "joints": JOINTS,
    "labs": LABS,
    "events": EVENTS,
    "procedures": PROCEDURES,
}
"""Names simulation.yaml's `defaults.stream_offsets` may use for the clinical domains."""


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
    day1: np.ndarray  # infusion date per enrolled subject
    visit_dates: dict[str, np.ndarray] = field(default_factory=dict)  # folder -> per enrolled
    unscheduled: pd.DataFrame | None = None  # enrolled index, date (mess)

    @property
    def enrolled_ids(self) -> np.ndarray:
        return self.subject[self.enrolled]


class ChunkGenerator:
    """Generates every form for one chunk; methods return frames in contract column order."""

    def __init__(self, profile: Profile, plan: ChunkPlan, seed: int) -> None:
        self.p = profile
        self.sim = profile.sim
        self.plan = plan
        self.seed = seed
        self.study = str(self.sim["study_id"])
        self.site = str(self.sim["site"]["number"])
        self.visits = {v["edc_folder"]: v for v in profile.design["visits"]}
        self.text = self.sim["edc_text"]
        offsets = self.sim["defaults"].get("stream_offsets") or {}
        self.offsets = {DOMAIN_NAMES[k]: int(v) for k, v in offsets.items()}

    def rng(self, *path: int) -> np.random.Generator:
        """The stream of a domain: seed + the domain's offset (simulation.yaml), chunk, path.

        Offsets let a seed search pick each domain's draws on their own (joint counts and labs
        are independent targets); every seed gets the same offsets, so seeds stay comparable.
        """
        return stream(self.seed + self.offsets.get(path[0], 0), self.plan.index, *path)

    def _frame(self, form: str, n: int, subjects: np.ndarray, **columns: Any) -> pd.DataFrame:
        """A contract-ordered frame; STUDY/SITENUMBER/SUBJECT filled in for EDC forms."""
        data: dict[str, pd.Series] = {}
        for name in self.p.form_columns(form):
            if name == "STUDY":
                data[name] = _text(self.study, n)
            elif name == "SITENUMBER":
                data[name] = _text(self.site, n)
            elif name == "SUBJECT":
                data[name] = _text(subjects)
            elif name in columns:
                value = columns[name]
                series = value if isinstance(value, pd.Series) else _text(value, n)
                data[name] = series.reset_index(drop=True).astype("str")
            else:
                data[name] = pd.Series([None] * n, dtype="str")
        return pd.DataFrame(data)

    # ---- subjects -------------------------------------------------------------------------
    def cohort(self) -> Cohort:
        plan, sim = self.plan, self.sim
        rng = self.rng(SUBJECTS)
        n = plan.n_enrolled + plan.n_failed
        width = max(int(self.sim.get("subject_id_width", 3)), len(str(plan.total_screened)))
        numbers = np.arange(plan.screened_start + 1, plan.screened_start + n + 1)
        subject = np.char.add(f"{self.site}-", np.char.zfill(numbers.astype(str), width))
        enrolled = np.ones(n, dtype=bool)
        enrolled[rng.permutation(n)[: plan.n_failed]] = False

        icdat = self._consent_dates(n)
        scrndat = icdat + rng.integers(0, 4, size=n).astype("timedelta64[D]")

        demo = sim["demographics"]
        sex = np.empty(n, dtype=object)
        sex[enrolled] = allocate(rng, plan.n_enrolled, demo["sex"])
        female = float(demo.get("screen_failure_sex_female", 0.5))
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

    def enrolment(self, c: Cohort) -> pd.DataFrame:
        rng = self.rng(SUBJECTS, 1)
        n = len(c.subject)
        failures = self.sim["enrolment"]["screen_failures"]
        pick = rng.choice(len(failures), size=n, p=_weights([f["weight"] for f in failures]))
        failid = np.array([f["IEFAILID"] for f in failures], dtype=object)[pick]
        reason = np.array([f["SFREAS"] for f in failures], dtype=object)[pick]
        self._failure_pick = np.where(c.enrolled, -1, pick)
        return self._frame(
            "enrolment",
            n,
            c.subject,
            SCRNDAT=edc_date(c.scrndat),
            ICDAT=edc_date(self._consent(c)),
            ENROLLED=np.where(c.enrolled, self.text["yes"], self.text["no"]),
            IEFAILID=pd.Series(np.where(c.enrolled, None, failid), dtype="str"),
            SFREAS=pd.Series(np.where(c.enrolled, None, reason), dtype="str"),
        )

    def demographics(self, c: Cohort) -> pd.DataFrame:
        rng = self.rng(SUBJECTS, 2)
        demo = self.sim["demographics"]
        n = len(c.subject)
        age = from_quantiles(rng.random(n), demo["age_quantiles"])
        birth = self._consent(c) - np.floor(age * 365.25).astype("timedelta64[D]")
        race = np.empty(n, dtype=object)
        ethnic = np.empty(n, dtype=object)
        race[c.enrolled] = allocate(rng, self.plan.n_enrolled, demo["race"])
        ethnic[c.enrolled] = allocate(rng, self.plan.n_enrolled, demo["ethnic"])
        race[~c.enrolled] = choose(rng, self.plan.n_failed, demo["race"])
        ethnic[~c.enrolled] = choose(rng, self.plan.n_failed, demo["ethnic"])
        other_texts = np.array(demo["race_other_text"], dtype=object)
        other = np.where(race == "Other", other_texts[rng.integers(0, len(other_texts), n)], None)
        return self._frame(
            "demographics",
            n,
            c.subject,
            DMDAT=edc_date(c.scrndat),
            BRTHDAT=edc_date(birth),
            SEX=c.sex,
            RACE=race,
            RACEOTH=pd.Series(other, dtype="str"),
            ETHNIC=ethnic,
        )

    def ra_history(self, c: Cohort) -> pd.DataFrame:
        rng = self.rng(SUBJECTS, 3)
        ra = self.sim["ra_history"]
        n = len(c.subject)
        years = from_quantiles(rng.random(n), ra["years_since_diagnosis"])
        diag = self._consent(c) - np.floor(years * 365.25).astype("timedelta64[D]")
        texts = np.array(ra["prior_dmard_text"], dtype=object)
        pos, neg = self.text["positive"], self.text["negative"]
        return self._frame(
            "ra_history",
            n,
            c.subject,
            RADIAGDAT=edc_date(diag),
            RFSTAT=np.where(rng.random(n) < ra["rf_positive"], pos, neg),
            ACCPSTAT=np.where(rng.random(n) < ra["accp_positive"], pos, neg),
            PRIORDMARD=texts[rng.integers(0, len(texts), n)],
        )

    # ---- schedule -------------------------------------------------------------------------
    def schedule(self, c: Cohort) -> None:
        """Visit dates per enrolled subject; missed visits (per the attendance table) are NaT."""
        rng = self.rng(VISITS)
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

    def visits_form(self, c: Cohort) -> pd.DataFrame:
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
        return self._frame(
            "visits",
            len(rows),
            rows["s"].to_numpy(),
            FOLDER=rows["f"].to_numpy(),
            VISDAT=edc_date(rows["d"].to_numpy()),
        )

    # ---- procedures -----------------------------------------------------------------------
    def liposuction(self, c: Cohort) -> pd.DataFrame:
        rng = self.rng(PROCEDURES, 1)
        cfg = self.sim["procedures"]["liposuction"]
        n = self.plan.n_enrolled
        vol = np.maximum(
            rng.normal(cfg["volume_ml"]["mean"], cfg["volume_ml"]["sd"], n), cfg["volume_ml"]["min"]
        )
        folder = cfg["folder"]
        return self._frame(
            "liposuction",
            n,
            c.enrolled_ids,
            FOLDER=folder,
            PRSTDAT=edc_date(c.visit_dates[folder]),
            PRSTTIM=hhmm(_minutes(rng, cfg["start_time"], n)),
            PRLOC=cfg["site"],
            FATVOL=fixed(vol, 0),
        )

    def infusion(self, c: Cohort) -> pd.DataFrame:
        rng = self.rng(PROCEDURES, 2)
        cfg = self.sim["procedures"]["infusion"]
        n = self.plan.n_enrolled
        start = _minutes(rng, cfg["start_time"], n)
        lo, hi = cfg["duration_minutes"]
        end = start + rng.integers(lo, hi + 1, size=n)
        seq = np.arange(self.plan.enrolled_start + 1, self.plan.enrolled_start + n + 1)
        lot = np.char.add(cfg["lot_prefix"], np.char.zfill(seq.astype(str), 4))
        return self._frame(
            "infusion",
            n,
            c.enrolled_ids,
            FOLDER=cfg["folder"],
            EXDOSE=str(int(cfg["dose"])),
            EXDOSU=cfg["unit"],
            EXSTDAT=edc_date(c.day1),
            EXSTTIM=hhmm(start),
            EXENDAT=edc_date(c.day1 + (end // 1440).astype("timedelta64[D]")),
            EXENTIM=hhmm(end % 1440),
            EXROUTE=cfg["route"],
            EXLOT=lot,
        )

    def disposition(self, c: Cohort) -> pd.DataFrame:
        last = c.day1.copy()
        for folder in self.ordered_folders():
            d = c.visit_dates[folder]
            last = np.where(~np.isnat(d) & (d > last), d, last)
        return self._frame(
            "disposition",
            self.plan.n_enrolled,
            c.enrolled_ids,
            DSDECOD=self.sim["disposition"]["completed"],
            DSSTDAT=edc_date(last),
            LASTCONTDAT=edc_date(last),
        )

    # ---- joints ---------------------------------------------------------------------------
    def joints(self, c: Cohort) -> pd.DataFrame:
        """134 rows per subject and attended visit from baseline on.

        Each subject has a fixed propensity per joint, so the same joints stay involved across
        visits (as in real disease); a visit's count picks the most involved joints.
        """
        rng = self.rng(JOINTS)
        cfg = self.sim["joint_counts"]
        joints = self.p.joints
        n = self.plan.n_enrolled
        n_j = len(joints)
        swell_ok = np.array([j["swollen"] for j in joints])
        kinds = [self.text["swollen"], self.text["tender"]]  # assessment 0 and 1
        tender_ok = np.array([j["tender"] for j in joints])

        z = rng.standard_normal((n, 2))
        rho = float(cfg["rho"])
        z[:, 1] = rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]
        u = ndtr(z)
        base_s = np.rint(from_quantiles(u[:, 0], cfg["baseline_swollen_quantiles"]))
        base_t = np.rint(from_quantiles(u[:, 1], cfg["baseline_tender_quantiles"]))
        factor = np.exp(rng.normal(0.0, cfg["subject_sd"], n))
        non_resp_share = cfg["non_responder_fraction"]
        non_resp = np.stack([rng.random(n) < non_resp_share[k] for k in kinds], axis=1)

        ids = [j["id"] for j in joints]
        replaced = np.zeros((n, n_j), dtype=bool)
        candidates = [ids.index(x) for x in cfg.get("replaceable_joints", [])]
        has_repl = rng.random(n) < cfg.get("joint_replacement_fraction", 0.0)
        if candidates:
            which = np.array(candidates)[rng.integers(0, len(candidates), n)]
            replaced[np.arange(n)[has_repl], which[has_repl]] = True

        propensity = rng.random((n, n_j))
        ranks = []
        for ok in (swell_ok, tender_ok):
            key = np.where(ok[None, :] & ~replaced, propensity, -1.0)
            order = np.argsort(-key, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(n_j)[None, :], axis=1)
            ranks.append(rank)
        avail = [
            (swell_ok[None, :] & ~replaced).sum(axis=1),
            (tender_ok[None, :] & ~replaced).sum(axis=1),
        ]
        base = [np.minimum(base_s, avail[0]), np.minimum(base_t, avail[1])]

        # slots: per joint, Swollen (if counted) then Tender
        slot_joint = np.array(
            [j for j in range(n_j) for a in (0, 1) if (swell_ok, tender_ok)[a][j]]
        )
        slot_kind = np.array([a for j in range(n_j) for a in (0, 1) if (swell_ok, tender_ok)[a][j]])

        remaining = cfg["remaining_fraction"]
        level = [float(cfg["non_responder_level"][k]) for k in kinds]
        visit_parts = []
        for folder in self.ordered_folders():
            if self.visits[folder]["target_day"] < 1:
                continue
            dates = c.visit_dates[folder]
            attended = np.flatnonzero(~np.isnat(dates))
            counts = np.empty((n, 2))
            for a in (0, 1):
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

        n_sv, n_slot = len(subj_idx), len(slot_joint)
        row_s = np.repeat(subj_idx, n_slot)
        row_j = np.tile(slot_joint, n_sv)
        row_k = np.tile(slot_kind, n_sv)
        rank = np.where(row_k == 0, ranks[0][row_s, row_j], ranks[1][row_s, row_j])
        count = np.repeat(count_col, n_slot, axis=0)[np.arange(n_sv * n_slot), row_k]
        not_eval = replaced[row_s, row_j]
        result_code = np.where(not_eval, 2, np.where(rank < count, 0, 1))

        labels = np.array([j["label"] for j in self.p.joints], dtype=object)
        date_text = edc_date(date_col).to_numpy()
        reason = cfg["joint_replacement_reason"]
        return self._frame(
            "joints",
            n_sv * n_slot,
            c.enrolled_ids[row_s],
            FOLDER=np.repeat(folder_col, n_slot),
            ASMDAT=np.repeat(date_text, n_slot),
            JOINT=labels[row_j],
            ASSESSMENT=np.array(kinds, dtype=object)[row_k],
            RESULT=np.array(
                [self.text["joint_present"], self.text["joint_absent"], self.text["not_evaluable"]],
                dtype=object,
            )[result_code],
            NEREAS=pd.Series(np.where(not_eval, reason, None), dtype="str"),
        )


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
    """Adds the lab transfer and adverse events to the EDC forms."""

    def __init__(self, profile: Profile, plan: ChunkPlan, seed: int) -> None:
        super().__init__(profile, plan, seed)
        self.catalogue = LabCatalogue(list(profile.labs["tests"]))

    # ---- labs -----------------------------------------------------------------------------
    def lab_values(self, c: Cohort, mess_rng: np.random.Generator | None) -> pd.DataFrame:
        """Numeric lab results in standard units: one row per sample and test.

        Baseline (the infusion visit) is the subject's level; other samples vary around it by
        the test's within-subject SD plus the profile's shift for that visit. Unscheduled
        samples (a mess kind) draw from the mess stream so clean values never move.
        """
        rng = self.rng(LABS)
        labs = self.sim["labs"]
        model = labs["model"]
        codes = [t["LBTESTCD"] for t in self.catalogue.tests]
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
        is_base = (samples["folder"] == self.sim["procedures"]["infusion"]["folder"]).to_numpy()
        subject_sd = np.array([model[k].get("subject_shift_sd", 0.0) for k in codes])
        subject_shift = rng.standard_normal((n_s, n_t)) * subject_sd[None, :]
        log_factor = shifts + subject_shift[samples["s"].to_numpy()] + within[None, :] * eps
        factor = np.where(is_base[:, None], 1.0, np.exp(log_factor))
        values = base[samples["s"].to_numpy()] * factor

        # screen failures' screening values the profile pins (e.g. the failed haemoglobin)
        pick = getattr(self, "_failure_pick", None)
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

    def lab_form(self, c: Cohort, rows: pd.DataFrame, *, censor: bool) -> pd.DataFrame:
        """Lab transfer text: vendor code/name/unit, result as printed, unit-converted range."""
        cat = self.catalogue
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
            np.char.add("L", subj_digits[rows["s"].to_numpy()]),
            np.char.add("-", np.char.zfill(rows["vnum"].to_numpy().astype(str), 2)),
        )
        labvisit_map = {f: v.get("lab_visit") for f, v in self.visits.items()}
        unscheduled_label = self.p.design["unscheduled"]["lab_visit"]
        labvisit = rows["folder"].map(labvisit_map).fillna(unscheduled_label)
        return self._frame(
            "lab",
            len(rows),
            c.subject[rows["s"].to_numpy()],
            PATID=c.subject[rows["s"].to_numpy()],
            ACCESSION=accession,
            LABVISIT=labvisit.to_numpy(),
            COLLDATE=iso_date(rows["date"].to_numpy()),
            COLLTIME=hhmm(rows["minutes"].to_numpy()),
            LABID=labid,
            TESTCODE=cat.array("vendor_code")[t],
            TESTNAME=cat.array("vendor_name")[t],
            RESULT=result,
            UNIT=unit_text,
            REFLOW=fixed(ref_lo, decimals),
            REFHIGH=fixed(ref_hi, decimals),
            SPECIMEN=cat.array("vendor_specimen")[t],
        )

    # ---- adverse events -------------------------------------------------------------------
    def adverse_events(self, c: Cohort) -> pd.DataFrame:
        rng = self.rng(EVENTS)
        cfg = self.sim["adverse_events"]
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
        severity = choose(rng, m, cfg["severity"])
        relation = choose(rng, m, cfg["relationship"])
        relation_pr = choose(rng, m, cfg["relationship"])
        order = np.lexsort((start, e))
        e, term, start, end, ongoing = (
            e[order],
            term[order],
            start[order],
            end[order],
            ongoing[order],
        )
        pick, severity, relation, relation_pr = (
            pick[order],
            severity[order],
            relation[order],
            relation_pr[order],
        )
        spid = np.arange(m) - np.concatenate([[0], np.cumsum(per_subject)[:-1]])[e] + 1
        coding: dict[str, Any] = {}
        for level in ("LLT", "PT", "HLT", "HLGT", "SOC"):
            coding[f"{level}_NAME"] = np.array([x[level][0] for x in terms], dtype=object)[term]
            coding[f"{level}_CODE"] = np.array([str(x[level][1]) for x in terms], dtype=object)[
                term
            ]
        no = np.full(m, self.text["no"], dtype=object)
        return self._frame(
            "adverse_events",
            m,
            c.enrolled_ids[e],
            AESPID=spid.astype(str),
            AETERM=verbatim[first_v[term] + pick],
            **coding,
            AESTDAT=edc_date(start),
            AEENDAT=edc_date(end),
            AEONGO=np.where(ongoing, self.text["yes"], self.text["no"]),
            AESEV=severity,
            AESER=no,
            AESDTH=no,
            AESLIFE=no,
            AESHOSP=no,
            AESDISAB=no,
            AESCONG=no,
            AESMIE=no,
            AEREL=relation,
            AERELPR=relation_pr,
            AEACN=cfg["action"],
            AEOUT=np.where(ongoing, self.text["ae_not_resolved"], self.text["ae_resolved"]),
        )
