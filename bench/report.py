"""
From the rounds' raw results to medians, ratios, a Markdown table, JSON
and a PNG chart.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import attr

Result = Dict[str, float]
Rounds = Dict[str, Dict[str, List[Result]]]
"""test name -> contestant name -> one result per round."""

NAN = float("nan")


def _per_unit(count_key: str, scale: float, cpu_key: str = "cpu") -> Callable[[Result], float]:
    def value(r: Result) -> float:
        count = r.get(count_key, 0.0)
        return r.get(cpu_key, NAN) / count * scale if count else NAN

    return value


def _field(key: str, scale: float = 1.0) -> Callable[[Result], float]:
    return lambda r: r.get(key, NAN) * scale


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Metric:
    """
    One row of the table.

    @ivar key: Its name in the JSON.
    @ivar test: The load it comes from.
    @ivar label: Its name in the table.
    @ivar value: Its value from one round's result.
    @ivar kind: C{"rate"} (higher is better, ratio = this / reference),
        C{"cpu"} (CPU per unit of work; ratio = reference / this, the work
        done per CPU-second relative to the reference, higher is better) or
        C{"cost"} (latency, memory: lower is better, ratio = this /
        reference).
    @ivar proxy_only: Whether only a proxy has it (CPU, memory).
    @ivar digits: Decimal places in the table.
    @ivar chart: Its name on the chart, which shows ratios only.
    @ivar charted: Whether the chart shows it (not the kernel's share of
        the CPU, which is a breakdown of another row).
    """

    key: str
    test: str
    label: str
    value: Callable[[Result], float]
    kind: str
    proxy_only: bool = False
    digits: int = 0
    chart: str = ""
    charted: bool = True

    @property
    def udp(self) -> bool:
        """
        Whether it measures UDP (compared with nginx, not HAProxy).
        """
        return self.test.startswith("udp")


METRICS: Sequence[Metric] = (
    Metric("newconn_rate", "newconn", "New TCP connections/s", _field("rate"), "rate",
           chart="new connections/s"),
    Metric("newconn_cpu", "newconn", "proxy CPU µs per new connection", _per_unit("requests", 1e6), "cpu", True, 1,
           chart="new connections per proxy CPU-s"),
    Metric("newconn_system", "newconn", "of which system (kernel) µs", _per_unit("requests", 1e6, "system_cpu"), "cost", True, 1,
           charted=False),
    Metric("keepalive_rate", "keepalive", "Keep-alive requests/s", _field("rate"), "rate",
           chart="keep-alive requests/s"),
    Metric("keepalive_p50", "keepalive", "Keep-alive p50 latency (ms)", _field("p50", 1e3), "cost", False, 3,
           chart="keep-alive p50 latency"),
    Metric("keepalive_p99", "keepalive", "Keep-alive p99 latency (ms)", _field("p99", 1e3), "cost", False, 3,
           chart="keep-alive p99 latency"),
    Metric("keepalive_cpu", "keepalive", "proxy CPU µs per request", _per_unit("requests", 1e6), "cpu", True, 1,
           chart="keep-alive requests per proxy CPU-s"),
    Metric("keepalive_system", "keepalive", "of which system (kernel) µs", _per_unit("requests", 1e6, "system_cpu"), "cost", True, 1,
           charted=False),
    Metric("bulk_rate", "bulk", "Bulk throughput, one stream (Gbit/s)", _field("rate", 8e-9), "rate", False, 2,
           chart="bulk throughput"),
    Metric("bulk_cpu", "bulk", "proxy CPU ms per GB relayed", _per_unit("bytes", 1e12), "cpu", True, 1,
           chart="bulk bytes per proxy CPU-s"),
    Metric("bulk_system", "bulk", "of which system (kernel) ms", _per_unit("bytes", 1e12, "system_cpu"), "cost", True, 1,
           charted=False),
    Metric("udp64_rate", "udp64", "UDP 64 B datagrams/s", _field("rate"), "rate",
           chart="UDP 64 B datagrams/s"),
    Metric("udp64_cpu", "udp64", "proxy CPU µs per 64 B datagram", _per_unit("received", 1e6), "cpu", True, 2,
           chart="UDP 64 B datagrams per proxy CPU-s"),
    Metric("udp64_system", "udp64", "of which system (kernel) µs", _per_unit("received", 1e6, "system_cpu"), "cost", True, 2,
           charted=False),
    Metric("udp1400_rate", "udp1400", "UDP 1,400 B datagrams/s", _field("rate"), "rate",
           chart="UDP 1,400 B datagrams/s"),
    Metric("udp1400_cpu", "udp1400", "proxy CPU µs per 1,400 B datagram", _per_unit("received", 1e6), "cpu", True, 2,
           chart="UDP 1,400 B datagrams per proxy CPU-s"),
    Metric("udp1400_system", "udp1400", "of which system (kernel) µs", _per_unit("received", 1e6, "system_cpu"), "cost", True, 2,
           charted=False),
    Metric("idle_memory", "idle", "Memory per idle relayed connection (KiB)", _field("per_connection", 1 / 1024),
           "cost", True, 2, chart="memory per idle connection"),
)


def median(values: Sequence[float]) -> float:
    """
    The median of the numbers that are not NaN (NaN when there are none).
    """
    real = [v for v in values if not math.isnan(v)]
    return statistics.median(real) if real else NAN


def summarize(
    rounds: Rounds, contestants: Sequence[str], reference: str = "haproxy", udp_reference: str = "nginx"
) -> List[Dict[str, Any]]:
    """
    For each metric: every contestant's per-round values, median and ratio
    to the reference measured in the same run.
    """
    rows: List[Dict[str, Any]] = []
    for metric in METRICS:
        ref = udp_reference if metric.udp else reference
        values: Dict[str, Dict[str, Any]] = {}
        for name in contestants:
            results = rounds.get(metric.test, {}).get(name)
            if not results:
                continue
            per_round = [metric.value(r) for r in results]
            values[name] = {"rounds": per_round, "median": median(per_round)}
        ref_median = values.get(ref, {}).get("median", NAN)
        for entry in values.values():
            entry["ratio"] = _ratio(metric.kind, entry["median"], ref_median)
        rows.append(
            {
                "key": metric.key,
                "label": metric.label,
                "chart": metric.chart or metric.label,
                "kind": metric.kind,
                "charted": metric.charted,
                "reference": ref,
                "values": values,
            }
        )
    return rows


def load_json(path: str) -> Dict[str, Any]:
    """
    Read a JSON written by L{write_json}, with C{null} numbers as NaN.
    """

    def nan(obj: Any) -> Any:
        if obj is None:
            return NAN
        if isinstance(obj, dict):
            return {k: nan(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [nan(v) for v in obj]
        return obj

    with open(path) as f:
        data = json.load(f)
    data["rounds"] = nan(data["rounds"])
    return data


def _ratio(kind: str, value: float, ref: float) -> float:
    if math.isnan(value) or math.isnan(ref) or value == 0 or ref == 0:
        return NAN
    return ref / value if kind == "cpu" else value / ref


def _number(value: float, digits: int) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:,.{digits}f}"


def markdown(
    summary: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    notes: Mapping[str, Mapping[str, str]],
    meta: Mapping[str, Any],
) -> str:
    """
    The table: one row per metric, one column per contestant, each cell
    the median and, in parentheses, the ratio to the reference.

    @param columns: (name, label) of each contestant that ran.
    @param notes: test name -> contestant -> text to show instead of a
        number (C{"n/a (no UDP yet)"}).
    """
    digits = {m.key: m.digits for m in METRICS}
    tests = {m.key: m.test for m in METRICS}
    head = "| Measure | " + " | ".join(label for _, label in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    lines = [head, rule]
    for row in summary:
        cells = []
        for name, _ in columns:
            entry = row["values"].get(name)
            note = notes.get(tests[row["key"]], {}).get(name)
            if entry is None or math.isnan(entry["median"]):
                cells.append(note or "–")
                continue
            text = _number(entry["median"], digits[row["key"]])
            if not math.isnan(entry["ratio"]):
                text += f" ({entry['ratio']:.2f}x)"
            cells.append(text)
        if any(c != "–" for c in cells):
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Medians of {meta['rounds']} interleaved rounds of {meta['seconds']:g} s per load."
        + (
            " Logging on: every proxy wrote a line per connection (HAProxy and l4lb a tcplog line"
            " on standard output, to a file; nginx its stream access_log)."
            if meta.get("logging")
            else " Logging off: no proxy wrote a line per connection."
        )
        + " In parentheses, the ratio to HAProxy measured in the same run (to nginx for UDP)."
        " For rates, latency and memory it is this value divided by the reference's;"
        " for the proxy CPU rows it is the work done per proxy CPU-second relative to the"
        " reference (the reference's CPU per unit divided by this one's), so above 1 is better"
        " everywhere except for latency and memory.",
    ]
    return "\n".join(lines) + "\n"


def write_json(path: str, meta: Mapping[str, Any], rounds: Rounds, summary: Sequence[Mapping[str, Any]]) -> None:
    """
    Everything measured, with NaN written as C{null}.
    """

    def clean(obj: Any) -> Any:
        if isinstance(obj, float) and math.isnan(obj):
            return None
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return obj

    with open(path, "w") as f:
        json.dump(clean({"meta": meta, "summary": summary, "rounds": rounds}), f, indent=1)
        f.write("\n")


def chart(path: str, summary: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> Optional[str]:
    """
    A PNG of the ratios of every proxy but the references, in two panels:
    higher is better (rates, work per CPU-second) and lower is better
    (latency, memory).

    @return: Why no chart was drawn, or C{None}.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'); no chart"
    shown = [(n, label) for n, label in columns if n not in ("direct", "haproxy")]
    charted = [r for r in summary if r.get("charted", True)]
    panels = [
        ("Higher is better", [r for r in charted if r["kind"] != "cost"]),
        ("Lower is better", [r for r in charted if r["kind"] == "cost"]),
    ]
    fig, axes = plt.subplots(
        1, 2, figsize=(13, 6.5), gridspec_kw={"width_ratios": [3, 2]}, constrained_layout=True
    )
    height = 0.8 / max(1, len(shown))
    for ax, (title, rows) in zip(axes, panels):
        labels = [f"{r['chart']}\n(vs {'nginx' if r['reference'] == 'nginx' else 'HAProxy'})" for r in rows]
        for i, (name, label) in enumerate(shown):
            ys = [j + i * height for j in range(len(rows))]
            ratios = [r["values"].get(name, {}).get("ratio", NAN) for r in rows]
            xs = [0.0 if math.isnan(v) else v for v in ratios]
            bars = ax.barh(ys, xs, height=height, label=label)
            for bar, v in zip(bars, ratios):
                text = "n/a" if math.isnan(v) else f"{v:.2f}"
                ax.text(bar.get_width() + 0.02, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
        ax.set_yticks([j + height * (len(shown) - 1) / 2 for j in range(len(rows))])
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{title} (ratio to the reference = 1)")
        ax.set_xlabel("ratio")
        found = [r["values"].get(n, {}).get("ratio", NAN) for r in rows for n, _ in shown]
        ax.set_xlim(0, max([1.2] + [v for v in found if not math.isnan(v)]) * 1.15)
    if shown:
        handles, labels = axes[0].get_legend_handles_labels()
        try:
            fig.legend(handles, labels, loc="outside lower center", ncols=len(shown))
        except (TypeError, ValueError):  # matplotlib before 3.7
            axes[1].legend(handles, labels, loc="lower right")
    fig.suptitle("Ratio to HAProxy (TCP) and nginx (UDP) in the same run, each proxy pinned to one CPU")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None
