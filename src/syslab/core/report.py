"""Results -> ``report/index.html`` (overview table + one section per system with figures),
``report/results.json`` and ``report/summary.md``."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from syslab.core.claims import headline, jsonable

PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>syslab {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.yes{color:#070;font-weight:600}.no{color:#b00;font-weight:600}
.REAL{background:#dfd}.HYBRID{background:#ffd}.MODELLED{background:#fdd}
.kind{font-size:.8em;color:#555}.control{background:#fee;border:2px solid #b00;padding:.5em}
.fid{padding:0 .4em;border-radius:3px;font-size:.85em}.muted{color:#666}img{max-width:100%;border:1px solid #ddd}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
</style></head><body>
<h1>syslab {{ title }}</h1>
{% if control %}<p class="control"><b>Negative control.</b> Every system's mechanism was replaced by the paper's
main baseline on the same workload. No claim should hold here; one that does is not measuring the mechanism.</p>
{% endif %}
<p class="muted">{{ generated }} · scale <b>{{ scale }}</b> · {{ systems|length }} system(s) ·
<b>{{ headline }}</b> (the headline counts claims only: the paper's mechanism measured against the paper's
baseline; checks are invariants, exactness, closed forms, hygiene and calibration readouts) · fidelity:
<span class="fid REAL">REAL</span> runs here on real inputs,
<span class="fid HYBRID">HYBRID</span> mechanism real, time from a model,
<span class="fid MODELLED">MODELLED</span> a model of hardware we lack.</p>
<h2>Overview</h2>
<table><tr><th>system</th><th>venue</th><th>fidelity</th><th>time (s)</th><th>finding</th><th>paper</th>
<th>measured</th><th>expected</th><th>holds</th></tr>
{% for s in systems %}{% if s.findings %}{% for f in s.findings %}<tr>
{% if loop.first %}<td rowspan="{{ s.findings|length }}"><a href="#{{ s.system }}">{{ s.name }}</a></td>
<td rowspan="{{ s.findings|length }}">{{ s.venue }}</td>
<td rowspan="{{ s.findings|length }}"><span class="fid {{ s.fidelity }}">{{ s.fidelity }}</span></td>
<td rowspan="{{ s.findings|length }}" class="{{ 'no' if scale == 'quick' and (s.duration_s or 0) > budget_s else '' }}">
{{ "%.1f"|format(s.duration_s or 0) }}</td>{% endif %}
<td><span class="kind">{{ f.kind or "claim" }}</span> {{ f.statement }}</td>
<td>{{ fmt(f.paper) }}{{ f.unit if f.paper is number else "" }}</td>
<td>{{ fmt(f.measured) }}{{ f.unit if f.measured is not none else "" }}</td><td>{{ f.expect }}</td>
<td class="{{ 'yes' if f.holds else 'no' }}">{{ 'yes' if f.holds else 'no' }}</td></tr>{% endfor %}
{% else %}<tr><td><a href="#{{ s.system }}">{{ s.name }}</a></td><td>{{ s.venue }}</td>
<td><span class="fid {{ s.fidelity }}">{{ s.fidelity }}</span></td><td></td><td colspan="5" class="no">{{ s.status }}:
{{ s.error }}</td></tr>{% endif %}{% endfor %}
</table>
{% for s in systems %}<h2 id="{{ s.system }}">{{ s.name }}
<span class="fid {{ s.fidelity }}">{{ s.fidelity }}</span></h2>
<p><i>{{ s.paper or "" }}</i> · {{ s.venue }} · key <code>{{ s.system }}</code> · status <b>{{ s.status }}</b> ·
{{ "%.1f"|format(s.duration_s or 0) }} s{% if scale == "quick" and (s.duration_s or 0) > budget_s %}
<span class="no">(over the {{ budget_s|int }} s quick budget)</span>{% endif %}</p>
{% if s.real %}<p><b>Runs for real:</b> {{ s.real }}<br><b>Modelled:</b> {{ s.modelled }}</p>{% endif %}
{% if s.error %}<pre>{{ s.error }}</pre>{% endif %}
{% if s.findings %}<table><tr><th>kind</th><th>finding</th><th>paper</th><th>measured</th><th>expected</th>
<th>holds</th><th>note</th></tr>{% for f in s.findings %}<tr><td class="kind">{{ f.kind or "claim" }}</td>
<td>{{ f.statement }}</td><td>{{ fmt(f.paper) }}</td>
<td>{{ fmt(f.measured) }} {{ f.unit if f.measured is not none else "" }}</td><td>{{ f.expect }}</td>
<td class="{{ 'yes' if f.holds else 'no' }}">{{ 'yes' if f.holds else 'no' }}</td><td>{{ f.note }}</td></tr>
{% endfor %}</table>{% endif %}
{% for t in s.tables %}<h4>{{ t.title }}</h4><table><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr>{% for v in r %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>{% endfor %}</table>{% endfor %}
{% for f in s.figures %}<figure><img src="{{ f.path }}" alt="{{ f.caption }}"><figcaption>{{ f.caption }}
</figcaption></figure>{% endfor %}
{% for n in s.notes %}<p class="muted">Note: {{ n }}</p>{% endfor %}
{% endfor %}
{% if gpu %}<h2 id="gpu-model">The GPU cost model beside published measurements</h2>
<p>Every modelled kernel, link and copy time in this report comes from one model (<code>syslab.core.gpu</code>),
fitted on {{ gpu.fitted }} cited measurements. Below, its prediction for each of the {{ gpu.summary.checks }}
published measurements it was <i>not</i> fitted on: median |error|
{{ "%.0f"|format(100 * gpu.summary.median_abs_rel_error) }}%, 90th percentile
{{ "%.0f"|format(100 * gpu.summary.p90_abs_rel_error) }}%, {{ "%.0f"|format(100 * gpu.summary.within_25pct) }}%
within 25%. Positive errors mean the model is optimistic. <code>syslab gpu validate</code> prints the same table.</p>
<table><tr>{% for c in gpu.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in gpu.rows %}<tr>{% for v in r[:-2] %}<td>{{ fmt(v) }}</td>{% endfor %}
<td class="{{ 'no' if r[-2] > 0.25 or r[-2] < -0.25 else '' }}">{{ "%+.0f"|format(100 * r[-2]) }}%</td>
<td class="muted">{{ r[-1] }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>
""", autoescape=True)


def fmt(value: Any) -> str:
    """Numbers with 4 significant digits; None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.4g}"
    return str(value)


QUICK_BUDGET_S = 60.0  # a quick reproduction should finish within this on 2 cores (reported, never asserted)


def write_report(systems: list[dict[str, Any]], out_dir: str | Path, scale: str = "quick",
                 control: bool = False) -> Path:
    """Write index.html, results.json and summary.md into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = jsonable([{k: v for k, v in s.items() if k != "figure_bytes"} for s in systems])
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    line = headline([f for s in clean for f in s.get("findings", [])])
    (out / "results.json").write_text(json.dumps({"generated": generated, "scale": scale, "control": control,
                                                  "headline": line, "systems": clean,
                                                  "gpu_model_validation": gpu_validation()["summary"]},
                                                 indent=2, default=str, allow_nan=False))
    title = "negative-control report" if control else "reproduction report"
    gpu = gpu_validation()
    html = PAGE.render(systems=clean, scale=scale, generated=generated, fmt=fmt, headline=line, title=title,
                       control=control, budget_s=QUICK_BUDGET_S, gpu=gpu)
    (out / "index.html").write_text(html)
    (out / "summary.md").write_text(summary_markdown(clean, scale, generated, line, control))
    return out / "index.html"


def gpu_validation() -> dict[str, Any]:
    """The cost model's validation table for the report: columns, rows and its summary (``core.gpu.validation``)."""
    from syslab.core.gpu import validation
    from syslab.core.gpu.calibration import comm_rows, compute_rows

    items = validation.checks()
    fitted = sum(r["role"] == "fit" for rows in (compute_rows(), comm_rows()) for r in rows)
    return {"columns": validation.COLUMNS[1:], "rows": [c.row()[1:] for c in items],
            "summary": validation.summary(items), "fitted": fitted}


def over_budget(system: dict[str, Any], scale: str) -> bool:
    """Whether a quick reproduction took longer than its budget (a warning in the report, never a failure)."""
    return scale == "quick" and (system.get("duration_s") or 0) > QUICK_BUDGET_S


def merge_into_report(result: dict[str, Any], out_dir: str | Path) -> list[dict[str, Any]]:
    """The systems already in ``out_dir/results.json`` (if readable and of the same scale) with ``result``
    replacing its own earlier entry, so running one system does not drop the others from the report."""
    path = Path(out_dir) / "results.json"
    try:
        previous = json.loads(path.read_text())
        same = (previous.get("scale") == result.get("scale")
                and bool(previous.get("control")) == bool(result.get("control")))
        systems = previous["systems"] if same else []
    except (OSError, ValueError, KeyError, TypeError):
        systems = []
    merged = [s for s in systems if isinstance(s, dict) and s.get("system") != result["system"]]
    return [*merged, result]


def summary_markdown(systems: list[dict[str, Any]], scale: str, generated: str, line: str,
                     control: bool = False) -> str:
    what = "negative-control summary" if control else "reproduction summary"
    lines = [f"# syslab {what} ({scale}, {generated})", ""]
    if control:
        lines += ["Every mechanism was replaced by the paper's main baseline: no claim should hold.", ""]
    lines += [f"{line} across {len(systems)} system(s). The headline counts claims only (mechanism against the "
              "paper's baseline); checks are counted apart.", "",
              "| system | fidelity | kind | finding | paper | measured | expected | holds |",
              "|---|---|---|---|---|---|---|---|"]
    for s in systems:
        if not s.get("findings"):
            lines.append(f"| {s['name']} | {s['fidelity']} | | {s['status']}: {s.get('error') or ''} | | | | |")
        for f in s.get("findings", []):
            lines.append(f"| {s['name']} | {s['fidelity']} | {f.get('kind', 'claim')} | {f['statement']} | "
                         f"{fmt(f['paper'])} | {fmt(f['measured'])}{'' if f['measured'] is None else ' ' + f['unit']}"
                         f" | {f['expect']} | {'yes' if f['holds'] else '**no**'} |")
    gpu = gpu_validation()["summary"]
    if gpu.get("checks"):
        lines += ["", f"GPU cost model against {gpu['checks']} published measurements it was not fitted on: median "
                  f"|error| {gpu['median_abs_rel_error']:.0%}, 90th percentile {gpu['p90_abs_rel_error']:.0%} "
                  "(`syslab gpu validate`)."]
    slow = [s for s in systems if over_budget(s, scale)]
    if slow:
        lines += ["", "Over the 60 s quick budget: " + ", ".join(f"{s['system']} ({s['duration_s']:.0f} s)"
                                                               for s in slow)]
    return "\n".join(lines) + "\n"
