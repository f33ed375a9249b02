"""Load and check the simulation profile and the specs it leans on.

The simulator is study-agnostic: everything it knows about a study comes from five YAML files
in the study folder (simulation.yaml, trial_design.yaml, raw_forms.yaml, lab_tests.yaml,
joints.yaml). A typo there should fail before any file is written, with the file and the key
path, so the checks live here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from cdiscforge.errors import SpecError

MESS_KINDS = (
    "partial_dates",
    "censored_results",
    "lab_units",
    "coded_value_variants",
    "unscheduled_visit",
    "duplicate_lab_record",
    "non_ascii_text",
    "long_ae_verbatim",
)
"""Every kind of mess the generator knows; the profile must configure each one."""

EDC_TEXT_KEYS = (
    "yes",
    "no",
    "positive",
    "negative",
    "female",
    "male",
    "swollen",
    "tender",
    "joint_present",
    "joint_absent",
    "not_evaluable",
    "ae_resolved",
    "ae_not_resolved",
)
"""How the EDC words coded answers; the generator writes only these texts."""

SIMULATED_FORMS = (
    "enrolment",
    "demographics",
    "ra_history",
    "liposuction",
    "infusion",
    "visits",
    "joints",
    "lab",
    "adverse_events",
    "disposition",
)
"""Form kinds the generator can write; raw_forms.yaml may declare any subset of them."""

SPEC_FILES = ("simulation", "trial_design", "raw_forms", "lab_tests", "joints")


@dataclass(frozen=True)
class Profile:
    """The parsed specs of one study, as plain mappings, plus where each came from."""

    study_dir: Path
    sim: dict[str, Any]
    design: dict[str, Any]
    forms: dict[str, Any]
    labs: dict[str, Any]
    joints: list[dict[str, Any]]

    def file(self, name: str) -> Path:
        return self.study_dir / f"{name}.yaml"

    @property
    def scheduled_visits(self) -> list[dict[str, Any]]:
        return list(self.design["visits"])

    def form_columns(self, form: str) -> list[str]:
        """Column order of a raw form as the contract lists it."""
        return list(self.forms["forms"][form]["columns"])


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise SpecError(path, "", "file not found (the simulator needs it)")
    from cdiscforge.spec import load_yaml  # the one guarded spec reader

    return load_yaml(path)


def _get(doc: Any, path: Path, key_path: str) -> Any:
    """Follow a dotted key path, raising a SpecError that names the first missing key."""
    node = doc
    walked: list[str] = []
    for key in key_path.split("."):
        walked.append(key)
        if not isinstance(node, Mapping) or key not in node:
            raise SpecError(path, ".".join(walked), "required key is missing")
        node = node[key]
    return node


def _check_quantiles(points: Any, path: Path, key_path: str) -> None:
    ok = isinstance(points, list) and len(points) >= 2
    if ok:
        probs = [p[0] for p in points]
        values = [p[1] for p in points]
        ok = (
            probs[0] == 0
            and probs[-1] == 1
            and all(a < b for a, b in pairwise(probs))
            and all(a <= b for a, b in pairwise(values))
        )
    if not ok:
        raise SpecError(
            path,
            key_path,
            "quantile points must be [[0, v0], ..., [1, vn]] with increasing probabilities "
            "and non-decreasing values",
        )


def _check_rate(value: Any, path: Path, key_path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise SpecError(path, key_path, f"a rate must be a number from 0 to 1, got {value!r}")


def _check_mess_kind(cfg: Any, path: Path, key_path: str) -> None:
    """Rates are probabilities and minimums are counts: a typo here would silently skew data."""
    if not isinstance(cfg, Mapping):
        raise SpecError(path, key_path, "must be a mapping with at least `enabled`")
    if "rate" in cfg:
        _check_rate(cfg["rate"], path, f"{key_path}.rate")
    for column, rate in (cfg.get("rates") or {}).items():
        _check_rate(rate, path, f"{key_path}.rates.{column}")
    minimum = cfg.get("minimum", 0)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
        raise SpecError(path, f"{key_path}.minimum", f"must be a count >= 0, got {minimum!r}")


def load_profile(study_dir: Path) -> Profile:
    """Read the five specs of a study and check the cross-references the simulator relies on.

    Checks, in order: each file exists and parses; the keys the generator reads exist; every
    mess kind is configured; attendance and response folders are visits of trial_design.yaml;
    every lab model names a test of lab_tests.yaml and every test has a model; replaceable
    joints are joint ids of joints.yaml; quantile tables are monotone.
    """
    study_dir = Path(study_dir)
    docs = {name: _read_yaml(study_dir / f"{name}.yaml") for name in SPEC_FILES}
    paths = {name: study_dir / f"{name}.yaml" for name in SPEC_FILES}
    sim, design, forms, labs, joints_doc = (docs[n] for n in SPEC_FILES)
    sp = paths["simulation"]

    for key in (
        "study_id",
        "site.number",
        "defaults.subjects",
        "defaults.seed",
        "chunk_subjects",
        "enrolment.screened_per_enrolled",
        "enrolment.first_consent",
        "enrolment.last_consent",
        "enrolment.screen_failures",
        "demographics.age_quantiles",
        "attendance.reference_enrolled",
        "attendance.attended",
        "joint_counts.remaining_fraction",
        "labs.model",
        "labs.sample_folders",
        "adverse_events.terms",
        "mess",
        "joint_counts.joint_replacement_reason",
    ):
        _get(sim, sp, key)
    for key in EDC_TEXT_KEYS:
        _get(sim, sp, f"edc_text.{key}")
    for kind in MESS_KINDS:
        _get(sim, sp, f"mess.{kind}.enabled")
    for kind in MESS_KINDS:
        _check_mess_kind(sim["mess"][kind], sp, f"mess.{kind}")
    unknown = sorted(set(sim["mess"]) - set(MESS_KINDS))
    if unknown:
        raise SpecError(sp, "mess", f"unknown mess kinds {unknown}; known: {list(MESS_KINDS)}")

    domains = ("subjects", "visits", "joints", "labs", "events", "procedures")
    offsets = sim["defaults"].get("stream_offsets") or {}
    if not isinstance(offsets, dict):
        raise SpecError(sp, "defaults.stream_offsets", "a mapping of domain name to integer")
    for name, value in offsets.items():
        if name not in domains:
            raise SpecError(sp, f"defaults.stream_offsets.{name}", f"not a domain of {domains}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(
                sp, f"defaults.stream_offsets.{name}", f"{value!r}: not an integer >= 0"
            )

    visits = _get(design, paths["trial_design"], "visits")
    folders = {v.get("edc_folder") for v in visits}
    for section in ("attendance.attended", "joint_counts.remaining_fraction"):
        for folder in _get(sim, sp, section):
            if folder not in folders:
                raise SpecError(sp, f"{section}.{folder}", f"not an edc_folder of {folders}")
    for folder in sim["labs"]["sample_folders"]:
        if folder not in folders:
            raise SpecError(sp, f"labs.sample_folders.{folder}", "not an edc_folder")

    tests = _get(labs, paths["lab_tests"], "tests")
    codes = {t["LBTESTCD"] for t in tests}
    for code in sim["labs"]["model"]:
        if code not in codes:
            raise SpecError(sp, f"labs.model.{code}", "not an LBTESTCD of lab_tests.yaml")
    for i, test in enumerate(tests):
        if test["LBTESTCD"] not in sim["labs"]["model"]:
            raise SpecError(sp, "labs.model", f"no model for test {test['LBTESTCD']}")
        if not test.get("units"):
            raise SpecError(paths["lab_tests"], f"tests[{i}].units", "at least one unit needed")

    joints = _get(joints_doc, paths["joints"], "joints")
    ids = {j["id"] for j in joints}
    for jid in sim["joint_counts"].get("replaceable_joints", []):
        if jid not in ids:
            raise SpecError(sp, "joint_counts.replaceable_joints", f"unknown joint id {jid!r}")

    _check_quantiles(sim["demographics"]["age_quantiles"], sp, "demographics.age_quantiles")
    for key in ("baseline_swollen_quantiles", "baseline_tender_quantiles"):
        _check_quantiles(_get(sim, sp, f"joint_counts.{key}"), sp, f"joint_counts.{key}")

    declared = _get(forms, paths["raw_forms"], "forms")
    unknown_forms = sorted(set(declared) - set(SIMULATED_FORMS))
    if unknown_forms:
        raise SpecError(
            paths["raw_forms"],
            f"forms.{unknown_forms[0]}",
            f"the simulator has no generator for forms {unknown_forms}; "
            f"it writes {list(SIMULATED_FORMS)}",
        )
    return Profile(study_dir, sim, design, forms, labs, joints)


def mess_switches(profile: Profile, mess: bool | Mapping[str, bool]) -> dict[str, bool]:
    """Which mess kinds are on for a run: the profile's setting, overridden by `mess`.

    mess=False turns everything off; mess=True keeps the profile's switches; a mapping
    overrides single kinds (unknown names are an error, not silently ignored).
    """
    base = {kind: bool(profile.sim["mess"][kind]["enabled"]) for kind in MESS_KINDS}
    if mess is True:
        return base
    if mess is False:
        return dict.fromkeys(MESS_KINDS, False)
    unknown = sorted(set(mess) - set(MESS_KINDS))
    if unknown:
        raise SpecError(
            profile.file("simulation"), "mess", f"unknown mess kinds {unknown} requested"
        )
    return {**base, **{k: bool(v) for k, v in mess.items()}}
