"""Load and check the simulation profile and the specs it leans on.

The simulator is study-agnostic: everything it knows about a study comes from YAML files in the
study folder: simulation.yaml (which forms, of which generic kind, filled how), trial_design.yaml
(visits), raw_forms.yaml (files and columns) and the item tables / test catalogues the forms
name. A typo there should fail before any file is written, with the file and the key path, so
the checks live here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from cdiscforge.errors import SpecError, SpecErrors

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

EDC_TEXT_KEYS = ("yes", "no", "female", "male")
"""edc_text keys the simulator itself writes (Y/N answers, sex); forms name any others."""

KINDS = (
    "screening",
    "demographics",
    "per_subject",
    "visit_dates",
    "item_counts",
    "lab_transfer",
    "events",
)
"""The generic form kinds; simulation.yaml `forms.<name>.kind` names one of them."""

COMMON_ROLES = frozenset({"study", "site", "subject"})
DATE_SOURCES = ("screening_date", "consent_date", "reference_date", "last_visit_date")
KIND_ROLES: dict[str, frozenset[str]] = {
    "screening": frozenset({"screening_date", "consent_date", "enrolled"}),
    "demographics": frozenset({"screening_date", "birth_date", "sex", "other_text"}),
    "per_subject": frozenset(DATE_SOURCES),
    "visit_dates": frozenset({"folder", "date"}),
    "item_counts": frozenset({"folder", "date", "item", "assessment", "result", "reason"}),
    "lab_transfer": frozenset(
        {
            "accession",
            "visit_label",
            "date",
            "time",
            "lab_id",
            "test_code",
            "test_name",
            "result",
            "unit",
            "ref_low",
            "ref_high",
            "specimen",
        }
    ),
    "events": frozenset({"sequence", "verbatim", "start_date", "end_date", "ongoing", "outcome"}),
}
"""Values each kind produces for `columns` (besides study, site, subject and the named
families failure.<key>, allocation.<name>, choice.<name>, coding.<level>.name|code)."""


def form_roles(kind: str, spec: Mapping[str, Any], sim: Mapping[str, Any]) -> set[str]:
    """Every value name a form of this kind can put in a column, given its parameters."""
    roles = set(COMMON_ROLES) | set(KIND_ROLES[kind])
    if kind == "screening":
        failures = (sim.get("enrolment") or {}).get("screen_failures") or []
        keys = {k for f in failures if isinstance(f, Mapping) for k in f}
        roles |= {f"failure.{k}" for k in keys - {"weight", "screening_labs"}}
    elif kind == "demographics":
        roles |= {f"allocation.{name}" for name in spec.get("allocations") or {}}
    elif kind == "events":
        roles |= {f"choice.{name}" for name in spec.get("choices") or {}}
        for level in spec.get("coding_levels") or []:
            roles |= {f"coding.{level}.name", f"coding.{level}.code"}
    return roles


SPEC_FILES = ("simulation", "trial_design", "raw_forms")


@dataclass(frozen=True)
class Profile:
    """The parsed specs of one study, as plain mappings, plus where each came from.

    `tables` holds the item tables and test catalogues the forms name (file name -> parsed).
    """

    study_dir: Path
    sim: dict[str, Any]
    design: dict[str, Any]
    forms: dict[str, Any]
    tables: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.study_dir / f"{name}.yaml"

    @property
    def scheduled_visits(self) -> list[dict[str, Any]]:
        return list(self.design["visits"])

    @property
    def simulated_forms(self) -> list[str]:
        """The forms simulation.yaml declares, in generation order."""
        return list(self.sim["forms"])

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


GENERATOR_KEYS = (
    "years_before",
    "share",
    "pick",
    "normal",
    "time_between",
    "minutes_after",
    "date",
    "sequence",
    "visit_date",
    "text",
    "value",
)
"""What a per_subject column's generator may be (the first of its keys that it has)."""


def _check_source(
    source: Any,
    kind: str,
    roles: set[str],
    sim: Mapping[str, Any],
    folders: set[str],
    listed: list[str],
    path: Path,
    key_path: str,
) -> None:
    """One `columns` entry: a known role, a known edc_text key, a generator that can run."""
    texts = sim.get("edc_text") or {}
    if isinstance(source, str):
        if source not in roles:
            raise SpecError(
                path, key_path, f"{source!r}: not a value a {kind} form makes ({sorted(roles)})"
            )
        return
    if not isinstance(source, Mapping):
        raise SpecError(path, key_path, "a value name or a mapping ({text: ...}, {value: ...})")
    generator = next((k for k in GENERATOR_KEYS if k in source), None)
    if generator is None or (kind != "per_subject" and generator not in ("text", "value")):
        allowed = GENERATOR_KEYS if kind == "per_subject" else ("text", "value")
        raise SpecError(path, key_path, f"unknown column source {dict(source)}; one of {allowed}")
    if generator == "text" and source["text"] not in texts:
        raise SpecError(path, f"{key_path}.text", f"{source['text']!r}: not an edc_text key")
    if generator == "share":
        _check_rate(source["share"], path, f"{key_path}.share")
        for branch in ("then", "else"):
            _check_source(
                source.get(branch),
                "constant",
                set(),
                sim,
                folders,
                listed,
                path,
                f"{key_path}.{branch}",
            )
    if generator == "years_before":
        _check_quantiles(source.get("quantiles"), path, f"{key_path}.quantiles")
    for ref_key in ("minutes_after", "plus_days_of"):
        ref = source.get(ref_key)
        if ref is not None and ref not in listed:
            raise SpecError(
                path, f"{key_path}.{ref_key}", f"{ref!r}: not a time column listed before it"
            )
    if generator == "visit_date" and source["visit_date"] not in folders:
        raise SpecError(
            path, f"{key_path}.visit_date", f"{source['visit_date']!r}: not an edc_folder"
        )
    if generator == "sequence" and "width" not in source:
        raise SpecError(path, f"{key_path}.width", "required key is missing")


def _table(
    study_dir: Path, tables: dict[str, Any], spec: Mapping[str, Any], key: str, sp: Path, at: str
) -> list[Any]:
    """An item table or catalogue a form names ({file, key}), read once per file."""
    ref = spec.get(key)
    if not isinstance(ref, Mapping) or "file" not in ref or "key" not in ref:
        raise SpecError(sp, f"{at}.{key}", "a mapping {file: <spec file>, key: <list key>}")
    name = str(ref["file"])
    if name not in tables:
        tables[name] = _read_yaml(study_dir / name)
    return list(_get(tables[name], study_dir / name, str(ref["key"])))


def _check_forms(
    study_dir: Path,
    sim: dict[str, Any],
    raw_forms: Mapping[str, Any],
    folders: set[str],
    tables: dict[str, Any],
    sp: Path,
    rp: Path,
) -> None:
    """simulation.yaml `forms`: each a raw_forms.yaml form, of a known kind, every column a
    column of that raw form with a source the kind can fill, its tables present."""
    declared = _get(sim, sp, "forms")
    if not isinstance(declared, Mapping) or not declared:
        raise SpecError(sp, "forms", "a mapping of raw form name to {kind, columns, ...}")
    errors: list[SpecError] = []
    for name, spec in declared.items():
        try:
            _check_form(study_dir, sim, raw_forms, folders, tables, sp, rp, name, spec, errors)
        except SpecError as err:
            errors.append(err)
    if errors:
        raise SpecErrors.combine(errors)


def _check_form(
    study_dir: Path,
    sim: dict[str, Any],
    raw_forms: Mapping[str, Any],
    folders: set[str],
    tables: dict[str, Any],
    sp: Path,
    rp: Path,
    name: str,
    spec: Any,
    errors: list[SpecError],
) -> None:
    """One declared form; column problems are collected into `errors`, the rest raised."""
    streams = sim["streams"]
    at = f"forms.{name}"
    if not isinstance(spec, Mapping):
        raise SpecError(sp, at, "a mapping with kind and columns")
    kind = _get(sim, sp, f"{at}.kind")
    if kind not in KINDS:
        raise SpecError(sp, f"{at}.kind", f"unknown form kind {kind!r}; known: {list(KINDS)}")
    if name not in raw_forms:
        raise SpecError(sp, at, f"not a form of {rp.name} ({sorted(raw_forms)})")
    stream_path = spec.get("stream")
    if stream_path is not None:
        if not isinstance(stream_path, list) or not stream_path or stream_path[0] not in streams:
            raise SpecError(
                sp, f"{at}.stream", f"[domain, sub-stream...], domain of {list(streams)}"
            )
    elif kind != "per_subject" and kind != "visit_dates":
        raise SpecError(sp, f"{at}.stream", "required key is missing")
    raw_columns = raw_forms[name].get("columns") or {}
    columns = _get(sim, sp, f"{at}.columns")
    roles = form_roles(kind, spec, sim)
    listed: list[str] = []
    for column, source in columns.items():
        try:
            if column not in raw_columns:
                raise SpecError(
                    sp, f"{at}.columns.{column}", f"not a column of {rp.name} form {name}"
                )
            _check_source(source, kind, roles, sim, folders, listed, sp, f"{at}.columns.{column}")
        except SpecError as err:
            errors.append(err)
        listed.append(column)
    if kind == "per_subject":
        if spec.get("subjects", "enrolled") not in ("screened", "enrolled"):
            raise SpecError(sp, f"{at}.subjects", "screened or enrolled")
        drawn = [
            c
            for c, s in columns.items()
            if isinstance(s, Mapping)
            and next((k for k in GENERATOR_KEYS if k in s), None)
            in ("years_before", "share", "pick", "normal", "time_between", "minutes_after")
        ]
        if drawn and stream_path is None:
            raise SpecError(sp, f"{at}.stream", f"columns {drawn} draw random numbers")
    elif kind == "demographics":
        _check_quantiles(_get(sim, sp, f"{at}.age_quantiles"), sp, f"{at}.age_quantiles")
    elif kind == "item_counts":
        items = _table(study_dir, tables, spec, "items", sp, at)
        ids = {j.get(spec["items"].get("id", "id")) for j in items}
        for jid in spec.get("unassessable_items", []):
            if jid not in ids:
                raise SpecError(sp, f"{at}.unassessable_items", f"unknown item id {jid!r}")
        for i, a in enumerate(_get(sim, sp, f"{at}.assessments")):
            _check_quantiles(
                a.get("baseline_quantiles"), sp, f"{at}.assessments[{i}].baseline_quantiles"
            )
            if a.get("text") not in sim["edc_text"]:
                raise SpecError(sp, f"{at}.assessments[{i}].text", "not an edc_text key")
        for folder in _get(sim, sp, f"{at}.remaining_fraction"):
            if folder not in folders:
                raise SpecError(
                    sp, f"{at}.remaining_fraction.{folder}", f"not an edc_folder of {folders}"
                )
        for key, text in (_get(sim, sp, f"{at}.results")).items():
            if text not in sim["edc_text"]:
                raise SpecError(sp, f"{at}.results.{key}", f"{text!r}: not an edc_text key")
    elif kind == "lab_transfer":
        tests = _table(study_dir, tables, spec, "catalogue", sp, at)
        table_path = study_dir / str(spec["catalogue"]["file"])
        model = _get(sim, sp, f"{at}.model")
        codes = {t["LBTESTCD"] for t in tests}
        for code in model:
            if code not in codes:
                raise SpecError(sp, f"{at}.model.{code}", f"not an LBTESTCD of {table_path.name}")
        for i, test in enumerate(tests):
            if test["LBTESTCD"] not in model:
                raise SpecError(sp, f"{at}.model", f"no model for test {test['LBTESTCD']}")
            if not test.get("units"):
                raise SpecError(table_path, f"tests[{i}].units", "at least one unit needed")
        for folder in [
            *_get(sim, sp, f"{at}.sample_folders"),
            _get(sim, sp, f"{at}.baseline_folder"),
        ]:
            if folder not in folders:
                raise SpecError(sp, f"{at}.sample_folders.{folder}", "not an edc_folder")
        _get(sim, sp, f"{at}.collection_time")
    elif kind == "events":
        _get(sim, sp, f"{at}.terms")
        for key in ("ended", "ongoing"):
            text = (spec.get("outcome") or {}).get(key)
            if text is not None and text not in sim["edc_text"]:
                raise SpecError(sp, f"{at}.outcome.{key}", f"{text!r}: not an edc_text key")


def load_profile(study_dir: Path) -> Profile:
    """Read a study's simulation specs and check the cross-references the simulator relies on.

    Checks, in order: each file exists and parses; the keys the generator reads exist; every
    mess kind is configured; stream names; attendance folders are visits of trial_design.yaml;
    every declared form is a raw form of a known kind whose columns are raw columns with
    sources the kind fills; item tables and catalogues exist and match their models.
    """
    study_dir = Path(study_dir)
    docs = {name: _read_yaml(study_dir / f"{name}.yaml") for name in SPEC_FILES}
    paths = {name: study_dir / f"{name}.yaml" for name in SPEC_FILES}
    sim, design, forms = (docs[n] for n in SPEC_FILES)
    sp = paths["simulation"]

    for key in (
        "study_id",
        "site.number",
        "defaults.subjects",
        "defaults.seed",
        "chunk_subjects",
        "streams.subjects",
        "streams.visits",
        "subjects.sex",
        "enrolment.screened_per_enrolled",
        "enrolment.first_consent",
        "enrolment.last_consent",
        "enrolment.screen_failures",
        "attendance.reference_enrolled",
        "attendance.attended",
        "mess",
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

    streams = sim["streams"]
    for name, value in streams.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 100:
            raise SpecError(sp, f"streams.{name}", f"{value!r}: not an integer from 0 to 99")
    domains = tuple(streams)
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
    for folder in _get(sim, sp, "attendance.attended"):
        if folder not in folders:
            raise SpecError(sp, f"attendance.attended.{folder}", f"not an edc_folder of {folders}")

    raw_forms = _get(forms, paths["raw_forms"], "forms")
    tables: dict[str, Any] = {}
    _check_forms(study_dir, sim, raw_forms, folders, tables, sp, paths["raw_forms"])
    long_ae = sim["mess"]["long_ae_verbatim"]
    if long_ae.get("enabled") and sim["forms"].get(long_ae.get("form"), {}).get("kind") != "events":
        raise SpecError(sp, "mess.long_ae_verbatim.form", "must name an events form of `forms`")
    return Profile(study_dir, sim, design, forms, tables)


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
