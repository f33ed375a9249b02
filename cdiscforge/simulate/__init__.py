"""Seeded simulator of a study's raw EDC and central-lab exports.

`simulate()` writes one CSV per form simulation.yaml declares (columns as raw_forms.yaml lists
them), as the EDC and the lab vendor export them, from the study's simulation profile.
Subjects are generated in chunks (each with its own seed stream) and streamed to temporary
files renamed into place at the end, so memory stays bounded at 10,000 subjects and a failed
run never leaves half-written exports behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from cdiscforge.errors import CdiscforgeError
from cdiscforge.simulate import mess as mess_kinds
from cdiscforge.simulate.formats import write_chunk
from cdiscforge.simulate.generate import ChunkPlan, ClinicalGenerator, plan_chunks
from cdiscforge.simulate.profile import Profile, load_profile, mess_switches

__all__ = ["SimulationResult", "load_profile", "simulate"]


@dataclass
class SimulationResult:
    """What a run wrote: form name -> file, and form name -> data rows (header excluded)."""

    files: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    subjects: int = 0
    seed: int = 0
    mess: dict[str, bool] = field(default_factory=dict)


def generate_chunk(
    profile: Profile, plan: ChunkPlan, seed: int, switches: dict[str, bool]
) -> dict[str, pd.DataFrame]:
    """Every declared form's rows for one chunk, mess applied, in contract column order.

    Forms are generated in the order simulation.yaml lists them (a screening form before the
    lab transfer, whose screen failures' pinned values it picks); the text mess kinds then
    run over all of them.
    """
    gen = ClinicalGenerator(profile, plan, seed)
    sim = profile.sim
    first = plan.index == 0
    cohort = gen.cohort()
    gen.schedule(cohort)
    if switches["unscheduled_visit"]:
        follow_up = [int(v["target_day"]) for v in profile.scheduled_visits if v["target_day"] > 1]
        cohort.unscheduled = mess_kinds.unscheduled_visits(
            cohort.day1,
            follow_up,
            sim["mess"]["unscheduled_visit"],
            gen.mess_rng("unscheduled_visit"),
            first,
            profile.design["unscheduled"]["edc_folder_prefix"],
        )
    frames = {form: gen.generate(form, cohort, switches) for form in profile.simulated_forms}

    cfg = sim["mess"]
    if switches["partial_dates"]:
        mess_kinds.partial_dates(frames, cfg["partial_dates"], gen.mess_rng("partial_dates"), first)
    if switches["coded_value_variants"]:
        mess_kinds.coded_value_variants(
            frames, cfg["coded_value_variants"], gen.mess_rng("coded_value_variants"), first
        )
    if switches["non_ascii_text"]:
        mess_kinds.non_ascii_text(
            frames, cfg["non_ascii_text"], gen.mess_rng("non_ascii_text"), first
        )
    events_form = cfg["long_ae_verbatim"].get("form")
    if switches["long_ae_verbatim"] and events_form in sim["forms"]:
        events = sim["forms"][events_form]
        mess_kinds.long_ae_verbatim(
            frames.get(events_form),
            cfg["long_ae_verbatim"],
            gen.mess_rng("long_ae_verbatim"),
            first,
            events["terms"],
            events["columns"],
            list(events.get("coding_levels") or []),
        )
    return {form: frames[form] for form in profile.forms["forms"] if form in frames}


def simulate(
    study_dir: Path,
    out_dir: Path,
    *,
    subjects: int | None = None,
    seed: int | None = None,
    mess: bool | Mapping[str, bool] = True,
) -> SimulationResult:
    """Write the raw exports of `subjects` enrolled subjects (plus screen failures) to out_dir.

    subjects / seed default to the profile's (15 and the calibrated seed). mess=True keeps the
    profile's switches, False writes clean data, a mapping switches single kinds. Same study,
    subjects, seed and mess settings give byte-identical files.
    """
    profile = load_profile(Path(study_dir))
    n = int(profile.sim["defaults"]["subjects"] if subjects is None else subjects)
    s = int(profile.sim["defaults"]["seed"] if seed is None else seed)
    if n < 1:
        raise CdiscforgeError(f"subjects must be at least 1, got {n}")
    if s < 0:
        raise CdiscforgeError(f"seed must be a non-negative integer, got {s}")
    switches = mess_switches(profile, mess)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    forms = {
        form: profile.forms["forms"][form]
        for form in profile.forms["forms"]
        if form in profile.sim["forms"]
    }
    result = SimulationResult(subjects=n, seed=s, mess=switches)
    temps: dict[str, Path] = {}
    handles: dict[str, BinaryIO] = {}
    try:
        for form, spec in forms.items():
            final = out / spec["file"]
            temps[form] = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            handles[form] = temps[form].open("wb")
            result.files[form] = final
            result.rows[form] = 0
        for plan in plan_chunks(profile, n):
            chunk = generate_chunk(profile, plan, s, switches)
            for form, frame in chunk.items():
                write_chunk(handles[form], frame, header=plan.index == 0)
                result.rows[form] += len(frame)
        for form in forms:
            handles[form].close()
            os.replace(temps[form], result.files[form])
    finally:
        for form, handle in handles.items():
            handle.close()
            temps[form].unlink(missing_ok=True)
    return result
