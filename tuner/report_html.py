"""The report (``tuner.report.Report``) as one self-contained HTML page: charts drawn with matplotlib
and embedded as PNG data, no script, nothing fetched from the network."""

from __future__ import annotations

import base64
import html
import io
import time

from .provenance import describe

OURS, THEIRS = "#1f77b4", "#ff7f0e"  # the tuner's bars and ONNX Runtime's, in every chart
CHART_TASKS = 25  # the per-layer chart shows the tasks with the most time; the table shows them all


def render(report) -> str:
    sections = [_summary(report), _chart_section("Where the time goes, per layer", _layers_png(report),
                                                  "layers"),
                _task_table(report)]
    if report.curve:
        sections.append(_chart_section("Tuning: the tuner's estimate of its tuned tasks' time", _curve_png(report),
                                       "curve"))
    return _PAGE.format(title=html.escape(f"{report.model}: tuned model report"), body="\n".join(sections))


def _summary(report) -> str:
    faster = "faster" if report.speedup >= 1 else "slower"
    factor = report.speedup if report.speedup >= 1 else 1 / report.speedup
    rows = [
        ("Latency", f"{report.tuner_ms:.3f} ms (ONNX Runtime: {report.onnxruntime_ms:.3f} ms) — "
                    f"{factor:.2f}x {faster} than ONNX Runtime"),
        ("Correctness", f"largest difference from ONNX Runtime {report.max_abs_err:.3g} "
                        f"({report.max_rel_err:.2g} of the output's largest magnitude); top-1 class agrees on "
                        f"{report.top1_agree} of {report.top1_inputs} random inputs"),
        ("Tuning coverage", f"{report.tasks_tuned} of {report.tasks} tasks tuned "
                            f"({report.flops_share_tuned:.0%} of the model's FLOPs); the others use default "
                            f"schedules"),
        ("Convolution layout", report.conv_layout),
        ("Machine", f"{report.backend_description}; {report.num_threads} threads; peak "
                    + (f"{report.peak_gflops:.1f} GFLOP/s (measured)" if report.peak_gflops else "not measured")),
        ("Measured", time.strftime("%Y-%m-%d %H:%M", time.localtime(report.created_at))),
    ]
    cells = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    chart = _chart_section("Latency", _latency_png(report), "latency")
    return f'<h1>{html.escape(report.model)}</h1>\n<table class="summary">{cells}</table>\n{chart}'


def _task_table(report) -> str:
    head = ("<tr><th>task</th><th>ONNX nodes</th><th>calls</th><th>ours ms</th><th>ONNX Runtime ms</th>"
            "<th>ours / ORT</th><th>GFLOP/s</th><th>% of peak</th><th>schedule</th></tr>")
    lines = []
    for row in report.rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio else "-"
        schedule = {"cache": "tuned", "default": "default", "runtime": "-"}.get(row.source, row.source)
        lines.append(
            f"<tr><td class='task'>{html.escape(row.task)}</td><td>{html.escape(describe(row.nodes, 4))}</td>"
            f"<td>{row.calls}</td><td>{_ms(row.ms)}</td><td>{_ms(row.onnxruntime_ms)}</td><td>{ratio}</td>"
            f"<td>{_num(row.gflops, '.1f')}</td><td>{_num(row.peak_share, '.0%')}</td><td>{schedule}</td></tr>")
    return ("<h2>Per task, beside ONNX Runtime's time for the same ONNX nodes</h2>\n"
            "<p>Sorted by the time that could be won: our time minus ONNX Runtime's.</p>\n"
            f'<table class="tasks" id="tasks">{head}\n' + "\n".join(lines) + "</table>")


def _ms(value) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _num(value, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def _chart_section(title: str, png: bytes, name: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<h2>{html.escape(title)}</h2>\n<img class="chart" id="chart-{name}" alt="{html.escape(title)}" '
            f'src="data:image/png;base64,{data}">')


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen: draw to memory
    import matplotlib.pyplot as plt

    return plt


def _latency_png(report) -> bytes:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 1.6))
    axes.barh(["ONNX Runtime", "tuned (TVM)"], [report.onnxruntime_ms, report.tuner_ms], color=[THEIRS, OURS])
    axes.set_xlabel("ms per run (lower is better)")
    return _png(figure)


def _layers_png(report) -> bytes:
    import numpy as np

    plt = _pyplot()
    rows = sorted(report.rows, key=lambda row: -max(row.ms or 0.0, row.onnxruntime_ms or 0.0))[:CHART_TASKS]
    labels = [_label(row) for row in rows]
    positions = np.arange(len(rows))
    figure, axes = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.2))
    axes.barh(positions - 0.2, [row.ms or 0.0 for row in rows], height=0.4, color=OURS, label="tuned (TVM)")
    axes.barh(positions + 0.2, [row.onnxruntime_ms or 0.0 for row in rows], height=0.4, color=THEIRS,
              label="ONNX Runtime, same nodes")
    axes.set_yticks(positions, labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("ms per run")
    axes.legend(loc="lower right")
    return _png(figure)


def _label(row) -> str:
    if not row.nodes:
        return row.task[:40]
    first = row.nodes[0].name
    return f"{first[:32]} +{len(row.nodes) - 1}" if len(row.nodes) > 1 else first[:36]


def _curve_png(report) -> bytes:
    plt = _pyplot()
    figure, (by_trials, by_time) = plt.subplots(1, 2, figsize=(10, 3.2))
    estimates = [point.estimate_ms for point in report.curve]
    by_trials.plot([point.trials for point in report.curve], estimates, color=OURS, linewidth=2.5)
    by_trials.set_xlabel("trials")
    by_trials.set_ylabel("estimated ms (tuned tasks)")
    by_time.plot([point.seconds / 60 for point in report.curve], estimates, color=OURS, linewidth=2.5)
    by_time.set_xlabel("tuning minutes")
    return _png(figure)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 14px; }}
table.tasks td:nth-child(n+3) {{ text-align: right; }}
td.task {{ font-family: monospace; font-size: 12px; }}
img.chart {{ display: block; max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""
