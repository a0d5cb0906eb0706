"""One-line summaries of an incident for Slack or an Alertmanager annotation (pure formatting).

    a failed at 02:00 UTC — impact: 3 pipelines (b, c, d), 2 datasets (s3://x/b, s3://x/c)
    resolved: a failed at 02:00 UTC — resolved at 03:10 UTC after 1h10m; impacted 3 pipelines
    (b, c, d); still broken: d (promoted after 03:25 UTC unless it recovers)

Names come from the caller (ids are shown as `#id` when a name is missing); lists show the
first `max_names` names in sorted order, then "+N more".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from watcher.incidents.graph import PipelineGraph
from watcher.incidents.model import Incident, ProblemKind, Resolved

MAX_NAMES = 3

_PHRASES: dict[ProblemKind, str] = {
    ProblemKind.FAILED: "failed",
    ProblemKind.MISSED: "missed a scheduled run",
    ProblemKind.OVERDUE: "is running too long",
    ProblemKind.STALE: "is stale",
    ProblemKind.ANOMALOUS: "has an anomalous value",
}
_ORDER = list(ProblemKind)


def format_time(at: datetime) -> str:
    """HH:MM in UTC (naive datetimes are taken as UTC)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return f"{at:%H:%M} UTC"


def format_duration(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes or not parts:
        parts.append(f"{minutes}m")
    return "".join(parts)


def name_list(names: Iterable[str], noun: str, max_names: int = MAX_NAMES) -> str:
    """'3 pipelines (b, c, d)', '1 pipeline (b)', '5 datasets (a, b, c, +2 more)', '0 pipelines'."""
    ordered = sorted(set(names))
    count = len(ordered)
    label = f"{count} {noun}{'' if count == 1 else 's'}"
    if not ordered:
        return label
    shown = ordered[:max_names]
    if count > max_names:
        shown.append(f"+{count - max_names} more")
    return f"{label} ({', '.join(shown)})"


def _name(names: Mapping[int, str], key: int) -> str:
    return names.get(key, f"#{key}")


def _what(kinds: Iterable[ProblemKind]) -> str:
    phrases = [_PHRASES[k] for k in sorted(set(kinds), key=_ORDER.index)]
    if len(phrases) <= 1:
        return "".join(phrases) or "has a problem"
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _root_kinds(incident: Incident) -> list[ProblemKind]:
    kinds = [r.kind for r in (*incident.active, *incident.history) if r.depth == 0]
    return list(dict.fromkeys(kinds))


def headline(incident: Incident, pipeline_names: Mapping[int, str]) -> str:
    """'a failed at 02:00 UTC' (every kind the root had, in ProblemKind order)."""
    root = _name(pipeline_names, incident.root_pipeline_id)
    return f"{root} {_what(_root_kinds(incident))} at {format_time(incident.started_at)}"


def impacted_datasets(
    incident: Incident, graph: PipelineGraph, pipelines: Iterable[int]
) -> set[int]:
    """Addresses written by the root and the given impacted pipelines (the late data)."""
    found = set(graph.targets(incident.root_pipeline_id))
    for pipeline in pipelines:
        found.update(graph.targets(pipeline))
    return found


def summarize(
    incident: Incident,
    pipeline_names: Mapping[int, str],
    address_names: Mapping[int, str] | None = None,
    graph: PipelineGraph | None = None,
    max_names: int = MAX_NAMES,
) -> str:
    """The firing summary: root, what and when, then the active impact."""
    impacted = sorted(incident.impacted)
    text = f"{headline(incident, pipeline_names)} — impact: " + name_list(
        (_name(pipeline_names, p) for p in impacted), "pipeline", max_names
    )
    if graph is not None:
        datasets = impacted_datasets(incident, graph, impacted)
        text += ", " + name_list(
            (_name(address_names or {}, a) for a in datasets), "dataset", max_names
        )
    return text


def summarize_resolved(
    resolved: Resolved,
    pipeline_names: Mapping[int, str],
    max_names: int = MAX_NAMES,
) -> str:
    """The resolved message: duration, everything it impacted, what is still broken."""
    incident = resolved.incident
    end = incident.resolved_at or incident.started_at
    text = (
        f"resolved: {headline(incident, pipeline_names)} — resolved at {format_time(end)} "
        f"after {format_duration(end - incident.started_at)}; impacted "
        + name_list(
            (_name(pipeline_names, p) for p in incident.ever_impacted), "pipeline", max_names
        )
    )
    broken = sorted({p for p, _ in resolved.orphans})
    if broken:
        names = ", ".join(_name(pipeline_names, p) for p in broken[:max_names])
        if len(broken) > max_names:
            names += f", +{len(broken) - max_names} more"
        text += f"; still broken: {names}"
        if resolved.promote_after is not None:
            text += f" (promoted after {format_time(resolved.promote_after)} unless it recovers)"
    return text
