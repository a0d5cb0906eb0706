"""Accuracy benchmark of learned expectations on a labelled synthetic fleet.

``python -m benchmarks.accuracy [--seed 7] [--pipelines 300] [--days 28] [--quick] [--write]``

* `generator` — the fleet: schedules, noise, seasonality, trend, regime changes, incidents;
* `simulate` — the detectors over simulated time (checks every 5 min, hourly retraining);
* `scoring` — how alerts are matched to incidents and counted;
* `run` — the command, the Markdown table, ``--write`` into ``benchmarks/RESULTS.md``.

Methods compared:

1. **learned** — `watcher.expectations` at default settings (medium sensitivity);
2. **z-score baseline** — the original Watcher anomaly method: per metric (duration, total
   rows, inserts, updates, soft deletes), successful runs that started in the same UTC hour
   and ended in the previous 30 days, not flagged for that metric, at least 10 of them; mean
   and sample standard deviation; anomalous outside ``[max(0, mean − 2·sd), mean + 2·sd]``.
   It has no start, overdue or staleness detector;
3. **fixed rules** — what a typical user configures: a missed-run rule from the true cron
   (no start within 15 min after a slot; after a schedule move the user updated the cron),
   timeliness "running for more than 2× the typical duration" (the pipeline's base duration
   when the rule was written), "0 rows on a successful run", and freshness "no data change
   for 25 h" (73 h for weekday-only pipelines). No volume-spike or slow-run-after-the-fact
   rule; irregular pipelines get no missed-run rule.
"""
