"""The what-if report as one self-contained HTML file for reviewers: no scripts, no
external assets — inline CSS and an inline SVG chart of changes over event time."""

from __future__ import annotations

import html
import json
from typing import Any

from ordinance.replay.whatif import WhatIfReport

_COLOURS = ["#c0392b", "#d68910", "#1e8449", "#2471a3", "#7d3c98", "#566573"]
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1c2833}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #d5d8dc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f7} td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px ui-monospace,monospace} pre{margin:0;white-space:pre-wrap;max-width:520px}
.muted{color:#717d7e} .legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _chart(timeline: dict[str, Any]) -> str:
    series: dict[str, list[int]] = timeline["series"]
    if not series:
        return "<p class=muted>no decision changes</p>"
    buckets = len(next(iter(series.values())))
    totals = [sum(s[i] for s in series.values()) for i in range(buckets)]
    peak = max(totals) or 1
    width, height, pad = 900, 220, 30
    bar = (width - 2 * pad) / buckets
    parts = [
        f'<svg viewBox="0 0 {width} {height + 40}" width="100%" role="img" '
        'aria-label="decision changes over event time">'
    ]
    for i in range(buckets):
        y = float(height)
        for n, (_name, counts) in enumerate(sorted(series.items())):
            h = counts[i] / peak * (height - pad)
            if h:
                y -= h
                parts.append(
                    f'<rect x="{pad + i * bar:.1f}" y="{y:.1f}" width="{bar * 0.85:.1f}" '
                    f'height="{h:.1f}" fill="{_COLOURS[n % len(_COLOURS)]}">'
                    f"<title>{_e(_name)}: {counts[i]}</title></rect>"
                )
    parts.append(
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#566573"/>'
        f'<text x="{pad}" y="{height + 18}" font-size="11">{_e(timeline["start"])}</text>'
        f'<text x="{width - pad}" y="{height + 18}" font-size="11" text-anchor="end">'
        f"+{timeline['bucket_s'] * buckets:.0f} s</text>"
        f'<text x="{pad - 4}" y="{pad}" font-size="11" text-anchor="end">{peak}</text></svg>'
    )
    legend = "".join(
        f'<span><i style="background:{_COLOURS[n % len(_COLOURS)]}"></i>{_e(name)}</span>'
        for n, name in enumerate(sorted(series))
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def render_html(report: WhatIfReport) -> str:
    data = report.to_json()
    rows = "".join(
        f"<tr><td>{_e(t['old_effect'])} → {_e(t['new_effect'])}</td><td class=n>{t['count']}</td></tr>"
        for t in data["transitions"]
    )
    groups = []
    for g in data["groups"]:
        examples = "".join(
            f"<pre>{_e(json.dumps(x['request'], sort_keys=True))}</pre>"
            f"<div class=muted>{_e(x['event_time'])} · {_e(x['agent_id'])} · was "
            f"{_e(', '.join(x['old']['rule_ids']) or x['old']['effect'])}</div>"
            for x in g["examples"]
        )
        groups.append(
            f"<tr><td>{_e(g['old_effect'])} → {_e(g['new_effect'])}</td><td><code>{_e(g['tool'])}</code></td>"
            f"<td><code>{_e(g['rules'])}</code></td><td class=n>{g['count']}</td><td>{examples}</td></tr>"
        )
    window = data["window"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ordinance what-if</title><style>{_CSS}</style></head>
<body>
<h1>What-if: recorded traffic under a candidate bundle</h1>
<p>candidate <code>{_e(data["candidate"])}</code><br>
source <code>{_e(data["source"])}</code> · event time {_e(window["from"] or "start")} to {_e(window["to"] or "end")}
{" · agents " + _e(", ".join(data["agents"])) if data["agents"] else ""}</p>
<p><b>{data["changed"]}</b> of {data["evaluated"]} decisions would change effect;
{data["same_effect_other_rules"]} keep their effect under other rules; {data["skipped"]} not re-evaluated
(approval follow-ups, undecodable actions). Window counters are the recorded ones.</p>
<h2>Changes over event time</h2>{_chart(data["timeline"])}
<h2>By transition</h2><table><tr><th>old → new</th><th>decisions</th></tr>{rows}</table>
<h2>By tool and deciding rule, with examples</h2>
<table><tr><th>old → new</th><th>tool</th><th>candidate rules</th><th>decisions</th><th>examples</th></tr>{"".join(groups)}</table>
</body></html>
"""
