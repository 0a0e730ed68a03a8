"""The Prometheus metrics wool exposes, read from the metric objects the code creates.

wool's metric classes register into one process-wide registry; here they are built against a
fresh registry of their own (swapped in for the duration), so building the page twice in one
process (mkdocs serve, the tests) does not collide with itself or with metrics in use.
"""

from __future__ import annotations

from typing import Any

from ._table import code, table


def _families() -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """(exposed name, type, help, label names, side) of every metric, in definition order."""
    import prometheus_client

    from wool import _metrics

    saved = _metrics._registry
    _metrics._registry = prometheus_client.CollectorRegistry(auto_describe=True)
    try:
        sides: list[tuple[str, Any]] = [("worker", _metrics.WorkerMetrics()), ("caller", _metrics.CallerMetrics())]
        sides[0][1].watch(lambda: (0, 0, 0))
        rows = []
        for side, holder in sides:
            for metric in vars(holder).values():
                if isinstance(metric, prometheus_client.metrics.MetricWrapperBase):
                    name = metric._name + ("_total" if metric._type == "counter" else "")
                    rows.append((name, metric._type, metric._documentation, tuple(metric._labelnames), side))
        for family in _metrics._registry.collect():
            if not any(family.name == r[0] or family.name + "_total" == r[0] for r in rows):
                rows.append((family.name, family.type, family.documentation, (), "worker"))
        return rows
    finally:
        _metrics._registry = saved


def markdown(_: str = "") -> str:
    from wool import _metrics

    rows = [(code(name), kind, ", ".join(map(code, labels)), side, doc) for name, kind, doc, labels, side in _families()]
    outcomes = ", ".join(map(code, _metrics.OUTCOMES))
    note = f"The `outcome` label is one of {outcomes}. Histograms' buckets (seconds): {', '.join(f'{b:g}' for b in _metrics.BUCKETS)}."
    return table(("metric", "type", "labels", "counted by", "what"), rows) + "\n\n" + note
