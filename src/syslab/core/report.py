"""Results -> ``report/index.html`` (overview table + one section per system with figures),
``report/results.json`` and ``report/summary.md``."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from syslab.core.claims import jsonable

PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>syslab report</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.yes{color:#070;font-weight:600}.no{color:#b00;font-weight:600}
.REAL{background:#dfd}.HYBRID{background:#ffd}.MODELLED{background:#fdd}
.fid{padding:0 .4em;border-radius:3px;font-size:.85em}.muted{color:#666}img{max-width:100%;border:1px solid #ddd}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
</style></head><body>
<h1>syslab reproduction report</h1>
<p class="muted">{{ generated }} · scale <b>{{ scale }}</b> · {{ systems|length }} system(s) ·
{{ n_hold }}/{{ n_claims }} claims hold · fidelity: <span class="fid REAL">REAL</span> runs here on real inputs,
<span class="fid HYBRID">HYBRID</span> mechanism real, time from a model,
<span class="fid MODELLED">MODELLED</span> a model of hardware we lack.</p>
<h2>Overview</h2>
<table><tr><th>system</th><th>venue</th><th>fidelity</th><th>claim</th><th>paper</th><th>measured</th>
<th>expected</th><th>holds</th></tr>
{% for s in systems %}{% if s.findings %}{% for f in s.findings %}<tr>
{% if loop.first %}<td rowspan="{{ s.findings|length }}"><a href="#{{ s.system }}">{{ s.name }}</a></td>
<td rowspan="{{ s.findings|length }}">{{ s.venue }}</td>
<td rowspan="{{ s.findings|length }}"><span class="fid {{ s.fidelity }}">{{ s.fidelity }}</span></td>{% endif %}
<td>{{ f.statement }}</td><td>{{ fmt(f.paper) }}{{ f.unit if f.paper is number else "" }}</td>
<td>{{ fmt(f.measured) }}{{ f.unit if f.measured is not none else "" }}</td><td>{{ f.expect }}</td>
<td class="{{ 'yes' if f.holds else 'no' }}">{{ 'yes' if f.holds else 'no' }}</td></tr>{% endfor %}
{% else %}<tr><td><a href="#{{ s.system }}">{{ s.name }}</a></td><td>{{ s.venue }}</td>
<td><span class="fid {{ s.fidelity }}">{{ s.fidelity }}</span></td><td colspan="5" class="no">{{ s.status }}:
{{ s.error }}</td></tr>{% endif %}{% endfor %}
</table>
{% for s in systems %}<h2 id="{{ s.system }}">{{ s.name }}
<span class="fid {{ s.fidelity }}">{{ s.fidelity }}</span></h2>
<p><i>{{ s.paper or "" }}</i> · {{ s.venue }} · key <code>{{ s.system }}</code> · status <b>{{ s.status }}</b> ·
{{ "%.1f"|format(s.duration_s or 0) }} s</p>
{% if s.real %}<p><b>Runs for real:</b> {{ s.real }}<br><b>Modelled:</b> {{ s.modelled }}</p>{% endif %}
{% if s.error %}<pre>{{ s.error }}</pre>{% endif %}
{% if s.findings %}<table><tr><th>claim</th><th>paper</th><th>measured</th><th>expected</th><th>holds</th>
<th>note</th></tr>{% for f in s.findings %}<tr><td>{{ f.statement }}</td><td>{{ fmt(f.paper) }}</td>
<td>{{ fmt(f.measured) }} {{ f.unit if f.measured is not none else "" }}</td><td>{{ f.expect }}</td>
<td class="{{ 'yes' if f.holds else 'no' }}">{{ 'yes' if f.holds else 'no' }}</td><td>{{ f.note }}</td></tr>
{% endfor %}</table>{% endif %}
{% for t in s.tables %}<h4>{{ t.title }}</h4><table><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr>{% for v in r %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>{% endfor %}</table>{% endfor %}
{% for f in s.figures %}<figure><img src="{{ f.path }}" alt="{{ f.caption }}"><figcaption>{{ f.caption }}
</figcaption></figure>{% endfor %}
{% for n in s.notes %}<p class="muted">Note: {{ n }}</p>{% endfor %}
{% endfor %}</body></html>
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


def write_report(systems: list[dict[str, Any]], out_dir: str | Path, scale: str = "quick") -> Path:
    """Write index.html, results.json and summary.md into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = jsonable([{k: v for k, v in s.items() if k != "figure_bytes"} for s in systems])
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (out / "results.json").write_text(json.dumps({"generated": generated, "scale": scale, "systems": clean},
                                                 indent=2, default=str, allow_nan=False))
    claims = [f for s in clean for f in s.get("findings", [])]
    n_hold = sum(bool(f["holds"]) for f in claims)
    html = PAGE.render(systems=clean, scale=scale, generated=generated, fmt=fmt, n_hold=n_hold,
                       n_claims=len(claims))
    (out / "index.html").write_text(html)
    (out / "summary.md").write_text(summary_markdown(clean, scale, generated, n_hold, len(claims)))
    return out / "index.html"


def merge_into_report(result: dict[str, Any], out_dir: str | Path) -> list[dict[str, Any]]:
    """The systems already in ``out_dir/results.json`` (if readable and of the same scale) with ``result``
    replacing its own earlier entry, so running one system does not drop the others from the report."""
    path = Path(out_dir) / "results.json"
    try:
        previous = json.loads(path.read_text())
        systems = previous["systems"] if previous.get("scale") == result.get("scale") else []
    except (OSError, ValueError, KeyError, TypeError):
        systems = []
    merged = [s for s in systems if isinstance(s, dict) and s.get("system") != result["system"]]
    return [*merged, result]


def summary_markdown(systems: list[dict[str, Any]], scale: str, generated: str, n_hold: int, n_claims: int) -> str:
    lines = [f"# syslab reproduction summary ({scale}, {generated})", "",
             f"{n_hold}/{n_claims} claims hold across {len(systems)} system(s).", "",
             "| system | fidelity | claim | paper | measured | expected | holds |", "|---|---|---|---|---|---|---|"]
    for s in systems:
        if not s.get("findings"):
            lines.append(f"| {s['name']} | {s['fidelity']} | {s['status']}: {s.get('error') or ''} | | | | |")
        for f in s.get("findings", []):
            lines.append(f"| {s['name']} | {s['fidelity']} | {f['statement']} | {fmt(f['paper'])} | "
                         f"{fmt(f['measured'])}{'' if f['measured'] is None else ' ' + f['unit']} | {f['expect']} | "
                         f"{'yes' if f['holds'] else '**no**'} |")
    return "\n".join(lines) + "\n"
