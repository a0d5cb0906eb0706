"""The fleet run: generate, simulate the three methods, score, print, optionally write."""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.accuracy.generator import generate
from benchmarks.accuracy.scoring import Row, Tally, rows, score
from benchmarks.accuracy.simulate import CHECK_INTERVAL, run_learned, run_rules, run_zscore

METHODS = ("learned", "z-score baseline", "fixed rules")
RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"
START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"


GAPS = (
    "About the targets: most false alerts of the learned method are *at regime changes* "
    "(10% of the simulated pipelines move their schedule or double their volume for good "
    "once): the first alert after such a change is the same as an incident's until the "
    "change has lasted K = 3 runs, after which it is adopted and the alerts stop; the "
    "figure in parentheses is everything else. Missed runs are timed from the run's true "
    "median start; the one detected later than tolerance + one check interval (not "
    "investigated) is probably the learned phase lagging that median. TTD for stuck and "
    "slow runs counts from the run's start, so it includes the usual duration. Where the "
    "rest sits (seed 7, 13 of the 29 regime-change pipelines alert): one first alert per "
    "such pipeline is 1.55 per 1,000 pipeline-days, so with the 0.71 elsewhere this "
    "corpus has a floor of 2.26 for any detector that alerts on an incident's first sign;"
    " the other 1.07 are stale alerts of hourly pipelines moved to daily (0.71) and "
    "repeats on two noisy volume-doubling pipelines (0.36). Tried, not adopted: (a) not "
    'reporting staleness while a late start was reported since the last change ("said '
    'once"): 2.62 (stale 1.07 → 0.36), recall 0.98 and TTD unchanged — but the shipped '
    "`WatcherPipelineNotFresh` alert fires from the freshness gauges, so Slack would "
    "still say both; it needs the alert rules (an inhibition by "
    "`WatcherPipelineLateStart`) and the end-to-end test's stale case (a pipeline that "
    "stops running) reworked with it; (b) adopting a change after K = 2 runs instead of "
    "3: 21 false episodes at regime changes instead of 22, not worth a faster adoption of"
    " two-run incidents. "
)


@dataclass(frozen=True)
class Config:
    seed: int
    pipelines: int
    days: float
    warmup_days: float
    workers: int


def evaluate_pipeline(args: tuple[int, int, float, float]) -> dict[str, Tally]:
    """The three methods' tallies on one pipeline (a worker's unit of work)."""
    pid, seed, days, warmup = args
    p = generate(pid, seed, days, warmup)
    return {
        "learned": score(p, run_learned(p)),
        "z-score baseline": score(p, run_zscore(p)),
        "fixed rules": score(p, run_rules(p)),
    }


def run(cfg: Config) -> dict[str, Tally]:
    totals = {m: Tally() for m in METHODS}
    work = [(pid, cfg.seed, cfg.days, cfg.warmup_days) for pid in range(cfg.pipelines)]
    if cfg.workers <= 1:
        results = map(evaluate_pipeline, work)
        for r in results:
            for m in METHODS:
                totals[m].add(r[m])
        return totals
    with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
        for r in pool.map(evaluate_pipeline, work, chunksize=4):
            for m in METHODS:
                totals[m].add(r[m])
    return totals


def _f(x: float, digits: int = 2) -> str:
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _t(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(totals: dict[str, Tally], pipeline_days: float) -> str:
    head = (
        "| detector | method | incidents | recall | alert episodes | precision |"
        " false / 1k pipeline-days (of which not at regime changes) | TTD median | TTD p95 |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    by_method = {m: rows(totals[m], pipeline_days) for m in METHODS}
    lines = []
    for i in range(len(by_method["learned"])):
        for m in METHODS:
            r: Row = by_method[m][i]
            name = f"**{r.detector}**" if m == "learned" else ""
            lines.append(
                f"| {name} | {m} | {r.incidents} | {_f(r.recall)} | {r.episodes} |"
                f" {_f(r.precision)} | {_f(r.false_per_1k)} ({_f(r.false_per_1k_noise)}) |"
                f" {_t(r.ttd_median)} | {_t(r.ttd_p95)} |"
            )
    return head + "\n".join(lines) + "\n"


def targets(t: Tally, pipeline_days: float) -> str:
    overall = rows(t, pipeline_days)[-1]
    within = t.missed_within_target / t.missed_detected if t.missed_detected else math.nan
    met = {True: "yes", False: "**no**"}
    return (
        "| target (learned) | measured | met |\n|---|---|---|\n"
        f"| recall ≥ 0.95 | {_f(overall.recall)} | {met[overall.recall >= 0.95]} |\n"
        f"| ≤ 1 false alert per 1,000 pipeline-days | {_f(overall.false_per_1k)}"
        f" ({_f(overall.false_per_1k_noise)} not at regime changes) |"
        f" {met[overall.false_per_1k <= 1.0]} |\n"
        f"| missed run detected within learned tolerance + {CHECK_INTERVAL / 60:.0f} min |"
        f" {_f(100 * within, 1)}% of {t.missed_detected} | {met[within >= 1.0]} |\n"
    )


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else ""
    block = f"{START}\n{section}{END}\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END) + r"\n?", lambda _: block,
                      text, flags=re.S)  # fmt: skip
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pipelines", type=int, default=None, help="default 300 (40 with --quick)")
    ap.add_argument("--days", type=float, default=None, help="default 28 (14 with --quick)")
    ap.add_argument("--warmup-days", type=float, default=21.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    cfg = Config(
        seed=a.seed,
        pipelines=a.pipelines or (40 if a.quick else 300),
        days=a.days or (14.0 if a.quick else 28.0),
        warmup_days=a.warmup_days,
        workers=a.workers,
    )
    t0 = time.perf_counter()
    totals = run(cfg)
    elapsed = time.perf_counter() - t0
    pd = cfg.pipelines * cfg.days
    command = (
        "python -m benchmarks.accuracy"
        + (" --quick" if a.quick else "")
        + (f" --seed {cfg.seed} --pipelines {cfg.pipelines} --days {cfg.days:g}")
    )
    section = (
        "## Accuracy of learned expectations\n\n"
        f"Command: `{command}` (seed {cfg.seed}); {cfg.pipelines} simulated pipelines,"
        f" {cfg.days:g} evaluated days after {cfg.warmup_days:g} days of history"
        f" ({pd:,.0f} pipeline-days), checks every {CHECK_INTERVAL / 60:.0f} simulated"
        f" minutes, retraining hourly; {elapsed:.0f} s on {cfg.workers} worker(s)."
        " Generator, matching rules and baselines: `benchmarks/accuracy/` docstrings.\n\n"
        + targets(totals["learned"], pd)
        + "\n"
        + GAPS
        + "\n"
        + table(totals, pd)
        + "\n"
    )
    print(section)
    if a.write:
        write_results(section)
        print(f"wrote {RESULTS}")
    return 0
