"""The spec engine: builds datasets from dataset specs, in dependency order, accounting for
every record.

For each dataset: each record block (a raw form, a spec table, an upstream dataset or a
registered generator) is filtered, mapped variable by variable through the rule vocabulary,
stacked with the other blocks, de-duplicated by the spec's stated rule, finished by the
`final` rules (--SEQ, flags over the whole record set), made ASCII (transliterations logged),
sorted, and wrapped as a `Dataset` with the spec's metadata. SUPP-- datasets come from the
spec's `supp` items. The reconciliation row of every source says read = written + rejected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pickle
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cdiscforge import model, standards, xpt
from cdiscforge.buildlog import BuildLog, Event, Reconciliation
from cdiscforge.compact import compact_series, frame_as_text, pack, tighten
from cdiscforge.concurrent import Child, give_back_memory, reuse_memory, workers
from cdiscforge.errors import (
    CdiscforgeError,
    InputError,
    Recorder,
    SpecError,
    collecting,
    collector,
    raise_first,
    recording,
    report,
)
from cdiscforge.model import Dataset, Variable
from cdiscforge.raw import RawForm, check_relations, read_form
from cdiscforge.rules import GENERATORS, RuleContext, Source, _strings, generator  # noqa: F401
from cdiscforge.spec import DatasetSpec, StudySpec
from cdiscforge.vectorise import (
    as_text,
    coded,
    distinct_per_group,
    forget,
    integers_as_text,
    remember_codes,
    row_keys,
    stable_order,
    take,
    text_codes,
    used_categories,
)

MAX_CHAR_BYTES = 200


class RawStore:
    """Reads each raw export once, through the contract, and logs it as a build input."""

    def __init__(self, study: StudySpec, raw_dir: Path, log: BuildLog) -> None:
        self.study = study
        self.raw_dir = raw_dir
        self.log = log
        self._forms: dict[str, RawForm] = {}
        self.released: set[str] = set()
        self.reread: list[str] = []
        # Forms a dataset de-duplicates by a stated rule: a repeated key is its business.
        self._deduped = {
            block.source
            for spec in study.datasets.values()
            if spec.dedupe is not None
            for block in spec.records
            if block.source
        }

    def form(self, name: str) -> RawForm:
        if name not in self._forms:
            form = read_form(
                self.study.forms[name],
                self.raw_dir,
                date_formats=self.study.date_formats(name),
                deduped=name in self._deduped,
            )
            self._forms[name] = form
            if name in self.released:  # read again after a release: logged the first time
                self.reread.append(name)
                return form
            self.log.input_file(name, form.path, len(form))
            for message, column, count, examples in form.notes:
                self.log.warn("raw", name, message, variable=column, count=count,
                              examples=examples)  # fmt: skip
        return self._forms[name]

    def rows(self, name: str) -> int:
        """Records of a form held now (0 once released): what a dataset reading it costs."""
        form = self._forms.get(name)
        return len(form) if form is not None else 0

    def release(self, names: Iterable[str]) -> None:
        """Let go of forms no dataset still to be built reads (`build_stage` knows which):
        at 10,000 subjects the lab export is ~0.3 GiB held through the MK build otherwise.
        A released form asked for again is read again (and counted in `reread`)."""
        for name in names:
            if self._forms.pop(name, None) is not None:
                self.released.add(name)

    def check_all(self) -> None:
        """Read and check every form the contract declares, before any mapping, so the
        problems of all files come together; name files in the raw folder that the contract
        does not declare (not read: a misnamed export would otherwise vanish unnoticed).
        A form that cannot be read at all (missing, malformed, wrong header) stops the build
        here, with every other form's problems; cell-level problems are collected and the
        mapping goes on, so its own located errors join them."""
        broken = False
        for name in self.study.forms:
            try:
                self.form(name)
            except InputError as exc:
                report(exc)
                broken = True
        declared = {spec.file for spec in self.study.forms.values()}
        if self.raw_dir.is_dir():
            extra = sorted(p.name for p in self.raw_dir.iterdir() if p.name not in declared)
            if extra:
                self.log.warn(
                    "raw", "", f"{len(extra)} file(s) in the raw folder {self.raw_dir} are not "
                    "declared in the raw-form contract (raw_forms.yaml) and were not read",
                    count=len(extra), examples=extra[:50],
                )  # fmt: skip
        if broken:
            found = collector()
            if found is not None:
                found.raise_if_any()
            return
        check_relations(self._forms)

    def source(self, name: str) -> Source:
        """The form as a dataset's source; its columns' codes from the check (RawForm.distinct)
        remembered for that dataset's build (vectorise.remember_codes: forgotten after it)."""
        form = self.form(name)
        for column, (codes, distinct) in form.distinct.items():
            remember_codes(form.frame[column], distinct, codes)
        return Source(
            name=name,
            file=str(form.path),
            frame=form.frame,
            rows=form.rows,
            date_formats=self.study.date_formats(name),
            subject=form.spec.subject,
        )


def build_order(study: StudySpec, stage: str) -> list[str]:
    """Datasets of a stage, each after the datasets it reads (stable: spec order otherwise)."""
    specs = {n: s for n, s in study.datasets.items() if s.stage == stage}
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done or name not in specs:
            return
        if name in visiting:
            raise SpecError(specs[name].file, "records", f"circular dependency: {chain}")
        visiting.add(name)
        for dep in sorted(specs[name].depends_on()):
            visit(dep, (*chain, dep))
        visiting.discard(name)
        done.append(name)

    for name in specs:
        visit(name, (name,))
    return done


def build_stage(
    study: StudySpec,
    stage: str,
    store: RawStore | None,
    log: BuildLog,
    upstream: dict[str, Dataset] | None = None,
    progress: Callable[[str], None] | None = None,
    on_built: Callable[[Dataset], None] | None = None,
) -> dict[str, Dataset]:
    """Build every dataset of a stage; returns them by name (SUPP-- included).

    `progress` hears each dataset's name before it is built, `on_built` each dataset made
    (a live display counts their records).

    On two cores the stage's most expensive dataset may be built in a forked child beside
    the others (`_Beside`); the result, the log and the errors are those of one process.

    Every located input error of the stage (and, with raw exports, of reading and checking
    all of them first) is collected and raised together at the end (errors.collecting)."""
    domains: dict[str, Dataset] = dict(upstream or {})
    made: dict[str, list[Dataset]] = {}
    order = build_order(study, stage)
    say = progress or (lambda _name: None)
    with collecting():
        if store is not None:
            store.check_all()
        child = _beside_plan(study, order, store, domains)
        if child is not None:
            _Beside(study, order, child, store, domains, log, say, on_built).build(made)
        else:
            last_reader = _last_readers(study, order) if store is not None else {}
            if store is not None:
                store.release(f for f in study.forms if f not in last_reader)  # checked only
            for name in order:
                say(name)
                made[name] = build_dataset(study.datasets[name], study, store, domains, log)
                for ds in made[name]:
                    domains[ds.name] = ds
                    if on_built:
                        on_built(ds)
                if store is not None:
                    store.release(f for f, last in last_reader.items() if last == name)
    built = {ds.name: ds for name in order for ds in made[name]}
    _shared_lengths(built)
    return built


# Rows a dataset reads (raw exports and datasets built before it) below which it is not
# worth a second process: the fork and the transfer would cost more than
# building it beside the others saves (the bundled 15-subject study stays in one process).
BESIDE_MIN_ROWS = 100_000


def _beside_plan(
    study: StudySpec, order: list[str], store: RawStore | None, domains: dict[str, Dataset]
) -> str | None:
    """The dataset of `order` to build in a second process, or None: the one that reads the
    most rows (raw exports and datasets already built: the cost estimate), among those with
    something to build beside them, i.e. a dataset that neither needs it nor is needed by
    it, directly or not (`_Beside` builds the chosen one's dependencies first).

    Only a stage that reads raw exports forks: the child maps everything its parent holds
    (the machine's memory budget is for the processes' summed RSS), and at the start of
    such a stage that is the raw exports, which each process lets go of after their last
    reader in it; a later stage's parent holds every dataset of the stages before (ADaM:
    all of SDTM, ~3 GiB at 10,000 subjects), which the child could not let go of."""
    if workers() < 2 or store is None:
        return None
    needs = _needs(study, order)
    best, most = None, BESIDE_MIN_ROWS - 1
    for name in order:
        if not any(name not in needs[m] and m not in needs[name] for m in order if m != name):
            continue
        rows = _rows_read(study, study.datasets[name], store, domains)
        if rows > most:
            best, most = name, rows
    return best


def _needs(study: StudySpec, order: list[str]) -> dict[str, set[str]]:
    """Every dataset of `order` (a stage, dependencies first) each one needs, transitively."""
    needs: dict[str, set[str]] = {}
    for name in order:
        deps = study.datasets[name].depends_on() & set(order)
        needs[name] = deps.union(*(needs[d] for d in deps))
    return needs


def _rows_read(
    study: StudySpec, spec: DatasetSpec, store: RawStore | None, domains: dict[str, Dataset]
) -> int:
    """The records of the raw exports and of the built datasets `spec` reads."""
    rows = sum(store.rows(f) for f in _forms_read(study, spec)) if store is not None else 0
    return rows + sum(len(domains[d]) for d in spec.depends_on() if d in domains)


class _Beside:
    """One stage with one dataset (`child`) built in a forked child process
    (cdiscforge.concurrent.Child) while this process builds the others, in their order,
    waiting for it only where a dataset reads it (or at the end).

    The datasets the child reads (directly or not) are built first, in their order, and
    the child is forked then: the others, before or after them in the order, are built
    beside it (MK at 10,000 subjects reads DM, SE and SV, not AE, CM and DS, which come
    before SV in the spec's order: built after the fork, they are ~1 s less before MK can
    start). Each of those first datasets is held as the child's result is (`_Made`: its
    log lines, reconciliation rows, recorded errors and exception) and put into the log and
    the errors at its place in the order, so the log and the errors are those of one
    process; one failing is the last of them built, and the others are built in the order
    without a child up to it, where its exception is raised, as one process raises it.

    The child lets go at once of the raw exports it does not read (so that the parent's release
    frees them), builds its dataset (and SUPP--) with its located input errors recorded
    (errors.Recorder), and sends back the datasets packed (cdiscforge.compact.pack: categoricals
    pickle small; this process keeps them so, whatever reads them later is indifferent to it),
    its log events and reconciliation rows, the recorded errors and the exception that stopped
    it, if one did. This process splices the events and rows into the log where a one-process
    build writes them (the place the child's dataset has in the order), and reports the errors
    there: those of the datasets after it in the order are recorded meanwhile and reported after
    the child's. An exception ends the stage as in one process: the child's is raised where the
    child's dataset is in the order, one of a dataset before it kills the child, one of a
    dataset after it waits for the child's errors first. Each raw export is let go of after its
    last reader in each process."""

    def __init__(
        self,
        study: StudySpec,
        order: list[str],
        child: str,
        store: RawStore | None,
        domains: dict[str, Dataset],
        log: BuildLog,
        say: Callable[[str], None],
        on_built: Callable[[Dataset], None] | None,
    ) -> None:
        self.study, self.order, self.child, self.store = study, order, child, store
        self.domains, self.log, self.say, self.on_built = domains, log, say, on_built
        spec = study.datasets[child]
        self.needs = spec.depends_on()
        self.first = _needs(study, order)[child]  # built before the fork
        self.child_forms = _forms_read(study, spec) if store is not None else set()
        self.readers: dict[str, set[str]] = {}  # form -> datasets of this process reading it
        for name in order:
            if name != child and store is not None:
                for form in _forms_read(study, study.datasets[name]):
                    self.readers.setdefault(form, set()).add(name)
        self.running: Child[_Made] | None = None
        self.mark: tuple[int, int] | None = None  # where the child's log lines go
        self.held: list[Recorder] = []  # errors of the datasets after the child's, in order

    def build(self, made: dict[str, list[Dataset]]) -> None:
        """Build the stage into `made` (the datasets of each spec, by name)."""
        self._release(set())
        first = self._build_first(made)
        with contextlib.ExitStack() as stack:
            for name in self.order:
                if self.running is None and self.needs <= self.domains.keys():
                    give_back_memory()  # not inherited: what nobody holds is counted twice
                    self.running = stack.enter_context(Child(self._in_child))
                    self._release(set(made))
                    give_back_memory()  # the child's raw exports (it holds them now)
                if name in first:  # built already: its lines and errors go here
                    self._put(first.pop(name), (len(self.log.events), len(self.log.reconciliation)))
                    continue
                spec = self.study.datasets[name]
                if name == self.child and self.running is not None:
                    self.mark = (len(self.log.events), len(self.log.reconciliation))
                    continue
                pending = self.mark is not None and self.child not in made
                if pending and not spec.depends_on() <= self.domains.keys():
                    self._collect(made)  # it reads the child's dataset (or its SUPP--)
                beside = self.running is not None and self.child not in made
                self.say(f"{name} (+ {self.child} beside)" if beside else name)
                if self.mark is None or self.child in made:
                    made[name] = build_dataset(spec, self.study, self.store, self.domains, self.log)
                else:  # after the child's dataset: its errors are reported after the child's
                    rec = None
                    try:
                        with recording() as rec:
                            made[name] = build_dataset(
                                spec, self.study, self.store, self.domains, self.log
                            )
                    except Exception:
                        if rec is not None:
                            self.held.append(rec)
                        self._collect(made)  # what the child found (or raised) comes first
                        raise
                    if rec is not None:
                        self.held.append(rec)
                for ds in made[name]:
                    self.domains[ds.name] = ds
                    if self.on_built:
                        self.on_built(ds)
                self._release(set(made))
                if beside:
                    give_back_memory()  # this dataset's working memory, while the child's grows
            if self.child not in made and self.mark is not None:
                self._collect(made)

    def _build_first(self, made: dict[str, list[Dataset]]) -> dict[str, _Made]:
        """The datasets the child needs, built in their order before any other, each held
        (`_Made`: its log lines taken out of the log) for `_put` at its place in the order;
        the first that fails is the last built."""
        first: dict[str, _Made] = {}
        for name in self.order:
            if name not in self.first:
                continue
            self.say(name)
            events, rows = len(self.log.events), len(self.log.reconciliation)
            out: list[Dataset] = []
            error: Exception | None = None
            with recording() as rec:
                try:
                    spec = self.study.datasets[name]
                    out = build_dataset(spec, self.study, self.store, self.domains, self.log)
                except Exception as exc:  # raised by _put, where one process raises it
                    error = exc
            first[name] = _Made(
                out, self.log.events[events:], self.log.reconciliation[rows:], rec, error
            )
            del self.log.events[events:], self.log.reconciliation[rows:]
            if error is not None:
                break
            made[name] = out
            for ds in out:
                self.domains[ds.name] = ds
            self._release(set(made))
        return first

    def _put(self, got: _Made, at: tuple[int, int]) -> None:
        """A dataset built out of the order (the child's, or one it needs): its log lines
        and reconciliation rows into the log at `at` (events, rows), its errors reported
        now, its exception raised; else `on_built` hears of its datasets."""
        events, rows = at
        self.log.events[events:events] = got.events
        self.log.reconciliation[rows:rows] = got.reconciliation
        found = collector()
        if got.errors is not None and found is not None:
            got.errors.replay(found)
        if got.error is not None:
            raise got.error
        for ds in got.datasets:
            if self.on_built:
                self.on_built(ds)

    def _release(self, done: set[str]) -> None:
        """Let go of the raw exports every dataset of this process reading them has read
        (those the child reads only once it holds them; should its dependencies be missing
        when its turn comes, it is built here, as in one process, and they go after it)."""
        if self.store is None:
            return
        settled = self.running is not None or self.child in done  # forked, or built here
        self.store.release(
            f
            for f in self.study.forms
            if self.readers.get(f, set()) <= done and (settled or f not in self.child_forms)
        )

    def _in_child(self) -> _Made:
        """The child's part (in the forked process): see the class docstring."""
        reuse_memory()  # its temporaries from the memory it freed (concurrent.reuse_memory)
        if self.store is not None:
            self.store.release(f for f in self.study.forms if f not in self.child_forms)
            give_back_memory()
        events, rows = len(self.log.events), len(self.log.reconciliation)
        spec = self.study.datasets[self.child]
        out: list[Dataset] = []
        error: Exception | None = None

        def mapped() -> None:  # nobody else reads them (a rule asking again reads again)
            if self.store is not None:
                self.store.release(self.child_forms)
                give_back_memory()

        with recording() as rec:
            try:
                out = build_dataset(
                    spec, self.study, self.store, self.domains, self.log, mapped, compact=True
                )
            except Exception as exc:
                error = exc
        if error is not None:
            try:
                pickle.loads(pickle.dumps(error))
            except Exception:
                raise error from None  # cdiscforge.concurrent sends its text instead
        for ds in out:
            pack(ds)  # the parent keeps it so (cdiscforge.compact)
        give_back_memory()  # the dataset's working memory, while the parent receives it
        return _Made(out, self.log.events[events:], self.log.reconciliation[rows:], rec, error)

    def _collect(self, made: dict[str, list[Dataset]]) -> None:
        """Wait for the child; put its log lines and errors where one process has them,
        then the errors recorded since; raise its exception, if it had one."""
        assert self.running is not None and self.mark is not None
        self.say(self.child)
        give_back_memory()  # what this process's datasets needed while the child's peaks
        got = self.running.result()
        self._put(got, self.mark)
        for ds in got.datasets:
            self.domains[ds.name] = ds
        made[self.child] = got.datasets
        found = collector()
        for rec in self.held:
            if found is not None:
                rec.replay(found)
        self.held = []


@dataclass
class _Made:
    """What the child sends back (see `_Beside`)."""

    datasets: list[Dataset]
    events: list[Event]
    reconciliation: list[Reconciliation]
    errors: Recorder | None
    error: Exception | None


def _forms_read(study: StudySpec, spec: DatasetSpec) -> set[str]:
    """The raw forms a dataset may read: a record block's source, or any parameter of its
    rules or generators whose value is the form's name (found in the parameters' values,
    not only in the fields known to name forms: a form kept too long costs memory, one
    released too early a second read)."""
    forms = set(study.forms)
    mentioned = {block.source for block in spec.records if block.source}
    params = [
        *spec.block_params,
        *(var.params for var in spec.variables),
        *(p for rules in spec.block_rules for _, p in rules.values()),
    ]
    for p in params:
        if p is not None:
            mentioned |= set(_strings(p)) & forms
    return mentioned & forms


def _last_readers(study: StudySpec, order: list[str]) -> dict[str, str]:
    """The last dataset of `order` that may read each raw form (`_forms_read`)."""
    last: dict[str, str] = {}
    for name in order:
        for form in _forms_read(study, study.datasets[name]):
            last[form] = name
    return last


def _shared_lengths(built: dict[str, Dataset]) -> None:
    """One length per shared character variable (VISIT, EPOCH, USUBJID ... in several
    datasets of the stage): the longest value in any of them. The FDA Technical Conformance
    Guide asks for character lengths set to the variable's maximum across all datasets of the
    study, except SUPP-- datasets, which keep their own fitted lengths. Lengths a spec fixes
    are left as they are."""
    datasets = [ds for name, ds in built.items() if not name.startswith("SUPP")]
    longest: dict[str, int] = {}
    seen: dict[str, int] = {}
    for ds in datasets:
        for v in ds.variables:
            if v.is_char and v.length is None:
                seen[v.name] = seen.get(v.name, 0) + 1
                width = max(1, model.char_max_bytes(ds.frame[v.name]))
                longest[v.name] = max(longest.get(v.name, 1), width)
    for ds in datasets:
        for v in ds.variables:
            if v.is_char and v.length is None and seen[v.name] > 1:
                v.length = longest[v.name]


def _own_codes(build: Callable[..., list[Dataset]]) -> Callable[..., list[Dataset]]:
    """The codes of the text columns broadcast while one dataset is built (vectorise.coded)
    serve that build only: none before it starts, all dropped when it ends, however."""

    @functools.wraps(build)
    def run(*args: Any, **kwargs: Any) -> list[Dataset]:
        forget()
        try:
            return build(*args, **kwargs)
        finally:
            forget()

    return run


@_own_codes
def build_dataset(
    spec: DatasetSpec,
    study: StudySpec,
    store: RawStore | None,
    domains: dict[str, Dataset],
    log: BuildLog,
    mapped: Callable[[], None] | None = None,
    compact: bool = False,
) -> list[Dataset]:
    """Build one dataset (and its SUPP--) from its spec. See the module docstring.

    `mapped` is called once every record block is mapped, before they are stacked (the
    build's child lets go of its raw exports there: only it reads them).

    An SDTM dataset's repeated-value text columns are kept as codes through the build
    (`RuleContext.keep_codes`, `vectorise.text_codes`) and given their strings once, in
    final order; with `compact` (the build's child, which packs the dataset to send it) the
    kept Char variables stay categoricals, exactly as `compact.pack` would make them; so they
    do in a dataset of at least `cdiscforge.xpt.CATEGORICAL_MIN_ROWS` records (read when
    called), which the build holds compact (`compact.compact`) whatever process made it."""
    frames: list[pd.DataFrame] = []
    recon: list[Reconciliation] = []
    for i, block in enumerate(spec.records):
        source = _block_source(spec, i, study, store, domains, log)
        row = Reconciliation(source.name, source.file, spec.name, read=len(source.frame))
        recon.append(row)
        frame = source.frame
        ctx = _context(
            study, spec, "", pd.DataFrame(index=frame.index), source, domains, log, store
        )
        ctx.keep_codes = spec.stage == "sdtm"
        if block.filter is not None:
            keep = block.filter.evaluate(ctx).to_numpy(dtype=bool)
            if (~keep).any():
                row.rejected[block.filter_reason] = int((~keep).sum())
            source = dataclasses.replace(source, frame=frame[keep], rows=source.rows[keep])
            ctx.source = source
            ctx.out = pd.DataFrame(index=source.frame.index)
        if block.pivot is not None:
            source = _pivot(spec, i, source, row, log)
            ctx.source = source
            ctx.out = pd.DataFrame(index=source.frame.index)
        if block.split is not None:
            source = _split(spec, i, source, row, log)
            ctx.source = source
            ctx.out = pd.DataFrame(index=source.frame.index)
        out = ctx.out
        for var in spec.variables:
            rdef, params = spec.block_rules[i].get(var.name, (var.rule, var.params))
            if rdef is not None and rdef.final:
                continue
            if rdef is None:
                out[var.name] = _empty(var.meta, out.index)
                continue
            ctx.variable = var.name
            out[var.name] = _typed(rdef.fn(ctx, params), var.meta, ctx)
        out["__block"] = i
        out["__row"] = source.rows
        frames.append(out)

    out = source = frame = ctx = None  # type: ignore[assignment]
    if mapped is not None:
        mapped()
    records = pd.concat(_stackable(frames), ignore_index=True) if frames else pd.DataFrame()
    frames.clear()  # the blocks' frames are in records now: not held through the copies below
    records = _dedupe(spec, records, recon, log)
    ctx = _context(study, spec, "", records, None, domains, log, store)
    ctx.keep_codes = spec.stage == "sdtm"
    for var in spec.variables:
        if var.rule is not None and var.rule.final:
            ctx.variable = var.name
            records[var.name] = _typed(var.rule.fn(ctx, var.params), var.meta, ctx)

    ctx = None  # type: ignore[assignment]  # (it holds records as before _ascii and the sort)
    records = records.drop(columns=_unread(spec, records))
    # A dataset the build will hold compact (cdiscforge.compact: at least CATEGORICAL_MIN_ROWS
    # records) is made so here, as the child makes its own: its codes are not expanded to
    # strings only to be factorized again before validation (LB at 10,000 subjects: 1.5
    # million records), and the sort moves codes.
    compact = compact or len(records) >= xpt.CATEGORICAL_MIN_ROWS
    if compact:
        _packable(spec, records)
    records = _ascii(spec, study, records, log)
    sort_by = [c for c in (spec.sort or spec.keys) if c in records.columns]
    if sort_by:
        records = _sorted(records, sort_by)
    records = records.reset_index(drop=True)
    fits = _texts(spec, records, compact)
    supp_values = {item.var: records[item.var] for item in spec.supp}
    overflow = _split_long_text(spec, records, log, fits)

    written = _rows_written(records["__block"].to_numpy(), records["__row"].to_numpy(), len(recon))
    for i, row in enumerate(recon):
        row.written = written[i]
        log.add_reconciliation(row)
        if not row.balanced:  # a bug in the engine, never in the data
            raise CdiscforgeError(f"reconciliation of {row.source} -> {spec.name} does not balance")

    kept = [v for v in spec.variables if v.keep]
    if spec.stage == "sdtm":  # the IG's order, whatever order the spec computes them in
        order = standards.sdtm_variable_order(spec.name, [v.name for v in kept])
        kept = sorted(kept, key=lambda v: order.index(v.name))
    metas = [Variable(**{**v.meta.__dict__}) for v in kept]
    frame = records[[v.name for v in kept]]
    dataset = Dataset(
        name=spec.name, label=spec.label, frame=frame, variables=metas, klass=spec.klass,
        structure=spec.structure, keys=list(spec.keys), standard=spec.standard,
        domain=spec.name if spec.stage == "sdtm" else None, comment=spec.comment,
        value_level_by=spec.value_level_by, subclass=spec.subclass,
    )  # fmt: skip
    log.info(spec.stage, spec.name, f"built: {len(frame)} records, {len(metas)} variables")
    out = [dataset]
    if spec.supp or overflow:
        from cdiscforge.supp import build_supp

        supp = build_supp(spec, study, frame_as_text(records), supp_values, overflow, log)
        if supp is not None:
            out.append(supp)
    return out


def _unread(spec: DatasetSpec, records: pd.DataFrame) -> list[str]:
    """The helper variables (not kept) nothing reads once the final rules have run: the
    sort, the ASCII and length checks, the text columns' strings (`_texts`) and SUPP--
    would otherwise move or check columns the dataset drops (LB's conversion factors,
    decimals and standard units: five of its 1.5 million-record columns at 10,000
    subjects)."""
    read = {v.name for v in spec.variables if v.keep}
    read |= {item.var for item in spec.supp} | {item.idvar for item in spec.supp if item.idvar}
    read |= {*(spec.sort or spec.keys), "STUDYID", "USUBJID", f"{spec.name}SEQ"}
    return [v.name for v in spec.variables if v.name not in read and v.name in records]


def _rows_written(blocks: np.ndarray, rows: np.ndarray, count: int) -> list[int]:
    """Per record block, how many of its source rows have a record (a split row writes one
    record per item, counted once): `records.loc[records["__block"] == i, "__row"].nunique()`
    for each block, by `vectorise.distinct_per_group` instead of hashing each block's rows
    (MK at 10,000 subjects: 0.45 s for 8.8 million records)."""
    if not len(rows):
        return [0] * count
    rows = rows.astype(np.int64, copy=False)
    low = min(int(rows.min()), 0)
    rows = rows - low if low else rows
    return distinct_per_group(blocks, count, rows, int(rows.max()) + 1).tolist()


def _context(
    study: StudySpec,
    spec: DatasetSpec,
    variable: str,
    out: pd.DataFrame,
    source: Source | None,
    domains: dict[str, Dataset],
    log: BuildLog,
    store: RawStore | None,
) -> RuleContext:
    return RuleContext(study, spec.name, variable, out, source, domains, log, str(spec.file), store)


def _block_source(
    spec: DatasetSpec,
    i: int,
    study: StudySpec,
    store: RawStore | None,
    domains: dict[str, Dataset],
    log: BuildLog,
) -> Source:
    block = spec.records[i]
    if block.source:
        if store is None:
            raise SpecError(spec.file, f"records[{i}].source", "no raw exports in this build")
        return store.source(block.source)
    if block.table:
        frame = study.table(block.table).reset_index(drop=True)
        return Source(
            block.table, str(study.table_file(block.table)), frame, np.arange(1, len(frame) + 1)
        )
    if block.dataset:
        if block.dataset not in domains:
            raise SpecError(spec.file, f"records[{i}].dataset", f"{block.dataset} is not built")
        frame = domains[block.dataset].frame.reset_index(drop=True)
        # Its rules read any column of every record as the text it was built as (a large
        # dataset is held compact: cdiscforge.compact): a column as they read it
        # (`Source.texts`), so that only the columns read, of the records kept by the
        # block's filter (tested per category), are made text; a pivot or a split reads
        # the frame whole.
        if block.pivot is not None or block.split is not None:
            frame = frame_as_text(frame)
        return Source(block.dataset, block.dataset, frame, np.arange(1, len(frame) + 1), texts=True)
    gdef = GENERATORS[block.generator or ""]  # known: checked when the spec loaded
    ctx = _context(study, spec, "", pd.DataFrame(), None, domains, log, store)
    frame = gdef.fn(ctx, spec.block_params[i]).reset_index(drop=True)
    return Source(
        block.generator or "", f"{block.generator} (generated)", frame, np.arange(1, len(frame) + 1)
    )


def _split(spec: DatasetSpec, i: int, source: Source, row: Reconciliation, log: BuildLog) -> Source:
    """One record per item of the block's delimited-list column (see `spec.Split`); rows
    whose list holds no item are rejected with that reason, the split is logged."""
    split = spec.records[i].split
    assert split is not None
    frame = source.frame.reset_index(drop=True)
    if split.column not in frame.columns:
        raise SpecError(spec.file, f"records[{i}].split.column", f"no column {split.column!r}")
    items = frame[split.column].astype("string").str.split(split.sep, regex=True)
    long = items.explode().str.strip()
    long = long[long.notna() & (long != "")]
    empty = len(frame) - long.index.nunique()
    if empty:
        row.rejected[f"no item in {split.column}"] = int(empty)
    out = frame.loc[long.index].copy()
    out[split.column] = long.astype("string").to_numpy()
    log.info(spec.stage, spec.name,
             f"{long.index.nunique()} {source.name} row(s) split on {split.column} into "
             f"{len(out)} record(s), one per listed item", count=len(out))  # fmt: skip
    rows = np.asarray(source.rows)[long.index.to_numpy()]
    return Source(source.name, source.file, out.reset_index(drop=True), rows,
                  source.date_formats, source.subject)  # fmt: skip


PIVOT_COLUMNS = ("TESTCD", "TEST", "ORRES", "ORRESU", "STAT", "REASND")


def _pivot(spec: DatasetSpec, i: int, source: Source, row: Reconciliation, log: BuildLog) -> Source:
    """A wide form as findings records (see `spec.Pivot`): one record per (form row, test),
    in row then test order, beside the form's own columns. A not-done row gives STAT = NOT
    DONE and REASND, its result and unit left null (a result written there anyway is
    logged); a blank result gives no record (`skip_empty`). A row giving no record at all
    is rejected with that reason; the routing (rows -> records) goes to the reconciliation.
    Work is per test, vectorised over the rows."""
    pivot = spec.records[i].pivot
    assert pivot is not None
    frame = source.frame.reset_index(drop=True)
    positions = np.arange(len(frame))
    parts: list[pd.DataFrame] = []
    skipped = overwritten = 0
    for j, test in enumerate(pivot.tests):
        result = frame[test.result].astype("string")  # as collected: rules tidy it
        blank = (result.isna() | (result.str.strip() == "")).to_numpy(dtype=bool)
        done_by = test.not_done or pivot.not_done
        not_done = np.zeros(len(frame), dtype=bool)
        if done_by is not None:
            codes = [done_by.equals] if isinstance(done_by.equals, str) else done_by.equals
            flag = frame[done_by.column].astype("string").str.strip()
            not_done = flag.isin(codes).fillna(False).to_numpy(dtype=bool)
        keep = ~blank | not_done if pivot.skip_empty else np.ones(len(frame), dtype=bool)
        skipped += int((blank & ~not_done).sum()) if pivot.skip_empty else 0
        overwritten += int((~blank & not_done).sum())
        orres = result.mask(blank | not_done)
        if test.unit is None:
            unit = pd.Series(pd.NA, index=frame.index, dtype="string")
        elif test.unit.column:
            unit = frame[test.unit.column].astype("string")
        else:
            unit = pd.Series(test.unit.value, index=frame.index, dtype="string")
        values = {
            "TESTCD": pd.Series(test.TESTCD, index=frame.index, dtype="string"),
            "TEST": pd.Series(test.TEST, index=frame.index, dtype="string"),
            "ORRES": orres,
            "ORRESU": unit.mask(orres.isna()),
            "STAT": pd.Series(np.where(not_done, "NOT DONE", None), dtype="string"),
            "REASND": (
                frame[done_by.reason].astype("string").where(not_done)
                if done_by is not None and done_by.reason
                else pd.Series(pd.NA, index=frame.index, dtype="string")
            ),
        }
        for name, q in test.qualifiers.items():
            values[name] = (
                frame[q.column].astype("string")
                if q.column
                else pd.Series(q.value, index=frame.index, dtype="string")
            )
        part = frame.assign(**values)[keep]
        part.insert(len(part.columns), "__pos", positions[keep])
        part.insert(len(part.columns), "__test", j)
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    long = long.sort_values(["__pos", "__test"], kind="stable").reset_index(drop=True)
    pos = long.pop("__pos").to_numpy()
    long = long.drop(columns="__test")
    rows = np.asarray(source.rows)[pos]
    made = len(np.unique(pos))
    if len(frame) - made:
        row.rejected["no result in any pivot test"] = len(frame) - made
    row.routed = f"{made} row(s) -> {len(long)} record(s) ({len(pivot.tests)} tests)"
    log.info(spec.stage, spec.name,
             f"{made} {source.name} row(s) pivoted into {len(long)} record(s), up to one per "
             f"test ({', '.join(t.TESTCD for t in pivot.tests)}); {skipped} blank result(s) "
             "gave no record", count=len(long))  # fmt: skip
    if overwritten:
        log.warn(spec.stage, spec.name,
                 f"{overwritten} result(s) on {source.name} rows marked not done were left "
                 "out (ORRES null, STAT NOT DONE)", count=overwritten)  # fmt: skip
    return Source(source.name, source.file, long, rows, source.date_formats, source.subject)


def _empty(meta: Variable, index: pd.Index) -> pd.Series:
    dtype = "Float64" if meta.type == "Num" else "string"
    return pd.Series(pd.NA, index=index, dtype=dtype)


def _typed(values: pd.Series, meta: Variable, ctx: RuleContext) -> pd.Series:
    """Coerce a rule's result to the variable's type; a non-number for Num is an error."""
    values = values.reindex(ctx.out.index) if len(values) != len(ctx.out.index) else values
    if isinstance(values.dtype, pd.CategoricalDtype):  # text kept as codes (keep_codes)
        if meta.type != "Num":  # of the text dtype the strings would be given here
            categories = values.dtype.categories
            text = categories.astype("string")
            return values if text.dtype == categories.dtype else values.cat.rename_categories(text)
        values = as_text(values)
    if meta.type == "Num":
        if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(
            values
        ):
            return values
        nums = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & nums.isna()
        infinite = nums.notna() & np.isinf(nums.astype("float64").fillna(0))
        for mask, problem in ((bad, "is numeric"), (infinite, "is not a finite number")):
            if mask.any():
                where = ctx.located(meta.name)
                # secondary: a bad raw cell it derives from was reported already
                text = f"{ctx.dataset}.{meta.name} {problem}"
                raise_first(mask, values, where, text, secondary=True)
        nums = nums.mask(infinite)
        return nums.astype("Float64")
    if pd.api.types.is_float_dtype(values) or pd.api.types.is_integer_dtype(values):
        return integers_as_text(values)
    return values.astype("string")


def _sorted(records: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """`records.sort_values(by, kind="stable", na_position="last")`, moved a column at a
    time: the order is found from the key columns' integer codes (vectorise.stable_order),
    and each column is taken in that order and released from `records`, so the frame is
    never held twice (MK at 10,000 subjects: ~3 GB)."""
    return _moved(records, stable_order(records, by))


def _moved(records: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """`records.take(positions)`, a column at a time (vectorise.take: the column's own
    array's take, not the frame's, ~half its cost on text), each column released from
    `records` once taken, so the frame is never held twice."""
    order = records.index.take(positions)
    out = pd.DataFrame(index=order)
    for name in list(records.columns):
        out[name] = take(records.pop(name), positions, order)
    return out


def _stackable(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The blocks' frames made ready to stack: a column kept as codes in every block gets
    the sorted union of their categories (pd.concat keeps a categorical of equal categories
    only), one that is not (text in another block, or absent there) its strings."""
    if len(frames) < 2:
        return frames
    names = dict.fromkeys(n for f in frames for n in f.columns)
    for name in names:
        kinds = [isinstance(f[name].dtype, pd.CategoricalDtype) if name in f else None
                 for f in frames]  # fmt: skip
        if not any(kinds):
            continue
        if all(kinds):
            parts = [pd.Series(f[name].dtype.categories) for f in frames]
            union = pd.factorize(pd.concat(parts, ignore_index=True), sort=True)[1]
            for f in frames:
                f[name] = f[name].cat.set_categories(union)
        else:
            for f, kind in zip(frames, kinds, strict=True):
                if kind:
                    f[name] = as_text(f[name])
    return frames


def _holds(column: pd.Series, test: Callable[..., object]) -> bool:
    """`_arrow_all(test)` for the values of a categorical text column, from its categories:
    all of them when they all pass, else those some record has."""
    categories = column.dtype.categories
    if _arrow_all(pd.Series(categories, dtype=categories.dtype), test):
        return True
    used = used_categories(column)
    return _arrow_all(pd.Series(used, dtype=used.dtype), test)


def _packable(spec: DatasetSpec, records: pd.DataFrame) -> None:
    """For a dataset the build's child will pack: its kept Char variables (not SUPP-- ones)
    still text made categoricals now, in place, so that the sort moves their codes and the
    checks read their categories: from the codes they were broadcast with (vectorise.coded),
    else as `compact.pack` makes them (compact_series: what it leaves as text stays so)."""
    supp = {item.var for item in spec.supp}
    for var in spec.variables:
        name = var.name
        if not var.keep or var.meta.type != "Char" or name in supp or name not in records:
            continue
        column = records[name]
        if not isinstance(column.dtype, pd.StringDtype):
            continue
        known = coded(column)
        if known is not None:
            records[name] = text_codes(known[0], known[1], column.index)
        else:
            records[name] = compact_series(column)


def _texts(spec: DatasetSpec, records: pd.DataFrame, compact: bool) -> set[str]:
    """Give the columns kept as codes their strings, in place, in the records' final order
    (one take each), and return those known to hold no value over MAX_CHAR_BYTES (checked
    on their categories). With `compact`, a kept Char variable (not a SUPP-- one) that fits
    stays a categorical in `compact.pack`'s form (`compact.tighten`)."""
    stay = set()
    if compact:
        supp = {item.var for item in spec.supp}
        stay = {v.name for v in spec.variables if v.keep and v.meta.type == "Char"} - supp
    fits: set[str] = set()
    for name in list(records.columns):
        column = records[name]
        if not isinstance(column.dtype, pd.CategoricalDtype):
            continue
        if _holds(column, _fits):
            fits.add(name)
        small = tighten(column) if name in stay and name in fits else None
        records[name] = small if small is not None else as_text(column)
    return fits


def _dedupe(
    spec: DatasetSpec, records: pd.DataFrame, recon: list[Reconciliation], log: BuildLog
) -> pd.DataFrame:
    rule = spec.dedupe
    if rule is None or records.empty:
        return records
    # sort_values([*by, *order], kind="stable", na_position="last"), then duplicated(by):
    # sorted, the records of one key are one run, so a duplicate is a record whose
    # neighbour (before it keeping the first, after it keeping the last) has its key.
    positions = stable_order(records, [*rule.by, *rule.order])
    keys = row_keys(*(records[c] for c in rule.by))[positions]  # equal key, equal integer
    repeated = np.zeros(len(keys), dtype=bool)
    if rule.keep == "first":
        repeated[1:] = keys[1:] == keys[:-1]
    else:
        repeated[:-1] = keys[:-1] == keys[1:]
    if not repeated.any():
        return records
    # Only the columns the accounting and the log read are gathered, not whole records.
    needed = records[list(dict.fromkeys([*rule.by, "__block", "__row"]))]
    dropped = needed.take(positions[repeated])
    kept = positions[~repeated]
    kept_block, kept_row = records["__block"].to_numpy()[kept], records["__row"].to_numpy()[kept]
    dup = repeated
    for i, rows in dropped.groupby("__block")["__row"]:
        # A source row is rejected only when none of its records is kept (split rows).
        mine = kept_row[kept_block == i]
        gone = np.unique(rows.to_numpy())
        gone = gone[~np.isin(gone, mine)]
        if len(gone):
            recon[int(i)].rejected[rule.reason] = len(gone)
    shown = dropped[[*rule.by, "__row"]].head(5).rename(columns={"__row": "raw row"})
    examples = [
        {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in shown.to_dict("records")
    ]
    log.warn(
        spec.stage,
        spec.name,
        f"{int(dup.sum())} duplicate record(s) by {rule.by} removed, keeping the "
        f"{rule.keep} by {rule.order or 'source order'} ({rule.reason})",
        count=int(dup.sum()),
        examples=examples,
    )
    return _moved(records, np.sort(kept))  # records.drop(dropped), in order


def _ascii(
    spec: DatasetSpec, study: StudySpec, records: pd.DataFrame, log: BuildLog
) -> pd.DataFrame:
    """XPT v5 is ASCII: transliterate accents (café -> cafe), logging each distinct value."""
    supp_vars = {item.var for item in spec.supp}
    for var in spec.variables:
        wanted = var.keep or var.name in supp_vars
        if not wanted or var.meta.type != "Char" or var.name not in records:
            continue
        col = records[var.name]
        if isinstance(col.dtype, pd.CategoricalDtype):  # kept as codes: its values once
            if _holds(col, _is_ascii):
                continue
            records[var.name] = col = as_text(col)
        col = col.astype("string")
        if _arrow_all(col, _is_ascii):  # the common case, in one pyarrow pass
            continue
        non_ascii = col.notna() & ~col.str.isascii().fillna(True).astype(bool)
        if not non_ascii.any():
            continue
        if study.config.ascii != "transliterate":
            for bad in np.flatnonzero(non_ascii.to_numpy())[:50].tolist():
                report(
                    InputError(
                        spec.name,
                        "non-ASCII text",
                        row=bad + 1,
                        column=var.name,
                        value=col.iloc[bad],
                    )
                )
            continue
        originals = col[non_ascii].unique().tolist()
        mapping = {v: _to_ascii(v) for v in originals}
        records[var.name] = col.mask(non_ascii, col[non_ascii].map(mapping))
        log.warn(
            spec.stage,
            spec.name,
            "non-ASCII text transliterated for XPT v5",
            variable=var.name,
            count=int(non_ascii.sum()),
            examples=[f"{k} -> {v}" for k, v in list(mapping.items())[:3]],
        )
    return records


def _arrow_all(col: pd.Series, test: Callable[..., object]) -> bool:
    """True when `test` (a pyarrow compute function) holds for every non-null value of a
    pyarrow-backed text column, checked in one pass over its Arrow data; False when it
    does not or the column is not Arrow-backed (the caller's pandas check then decides)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(col.dtype, pd.StringDtype) or col.dtype.storage != "pyarrow":
        return False
    data = pa.chunked_array(col.array.__arrow_array__())
    return bool(pc.all(test(data)).as_py() is not False)


def _is_ascii(data: object) -> object:
    import pyarrow.compute as pc

    return pc.string_is_ascii(data)


def _fits(data: object) -> object:
    import pyarrow.compute as pc

    return pc.less_equal(pc.utf8_length(data), MAX_CHAR_BYTES)


# Symbols NFKD does not decompose, spelled as a reviewer would type them.
_ASCII_SPELLINGS = str.maketrans({
    "®": "(R)", "©": "(C)", "™": "(TM)", "°": " deg", "µ": "u", "ß": "ss", "æ": "ae",
    "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "–": "-", "—": "-", "‘": "'",
    "’": "'", "“": '"', "”": '"', "…": "...", "×": "x", "±": "+/-", "≤": "<=", "≥": ">=",
})  # fmt: skip


def _to_ascii(text: str) -> str:
    """Accents dropped (café -> cafe), common symbols spelled out (® -> (R)); anything else
    becomes '?', which the log shows beside the original."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_SPELLINGS))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.encode("ascii", "replace").decode("ascii")


def _split_long_text(
    spec: DatasetSpec,
    records: pd.DataFrame,
    log: BuildLog,
    fits: frozenset[str] | set[str] = frozenset(),
) -> dict[str, pd.DataFrame]:
    """Character values over 200 bytes: split per SDTMIG 4.5.3.2 into the parent variable
    (first 200 characters, at a word boundary) and SUPP-- records QNAM = <VAR>1, <VAR>2 ...
    (`cdiscforge.supp` is the one home of the convention). Only SDTM general-observation
    text is split this way; elsewhere the XPT writer refuses the value with a located error,
    so nothing is truncated silently. Each split record is named in the log. The columns
    of `fits` are known to hold no such value (`_texts`)."""
    from cdiscforge.supp import split_message, split_series

    overflow: dict[str, pd.DataFrame] = {}
    if spec.stage != "sdtm":
        return overflow
    for var in spec.variables:
        if not var.keep or var.meta.type != "Char" or var.name not in records:
            continue
        if var.name in fits:
            continue
        col = records[var.name].astype("string")
        if _arrow_all(col, _fits):
            continue
        if not (col.str.len() > MAX_CHAR_BYTES).any():
            continue
        first, rest = split_series(col, MAX_CHAR_BYTES)
        records[var.name] = first
        overflow[var.name] = rest
        message, examples = split_message(
            records, rest, var.name, f"{spec.name}SEQ", f"text of {var.name}"
        )
        log.warn(spec.stage, spec.name, message, variable=var.name,
                 count=int(rest["row"].nunique()), examples=examples)  # fmt: skip
    return overflow
