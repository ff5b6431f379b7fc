"""The dashboards, defined once: Prometheus console pages and Grafana dashboards are generated from here.

`python -m deploy.observability.dashboards` writes
  consoles/<slug>.html                       served by `make run`'s Prometheus at /consoles/<slug>.html;
  console_libraries/assistant.lib            their navigation (prom.lib comes from Debian's package);
  grafana/dashboards/<slug>.json             for a Grafana, with a `datasource` variable;
  grafana/provisioning/{datasources,dashboards}/assistant.yml   Grafana's provisioning files.
`--check` writes nothing and fails when a committed file differs from what this module generates
(deploy/check.py runs it). A panel is a title, PromQL expressions (with a legend in Grafana's
`{{label}}` syntax) and a unit; recording rules it uses live in rules/recording.yml.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONSOLES = HERE / "consoles"
LIBRARY = HERE / "console_libraries" / "assistant.lib"
GRAFANA = HERE / "grafana"
DATASOURCE_UID = "assistant-prometheus"

# unit -> (Grafana unit, console y-axis unit, console formatter)
UNITS = {
    "s": ("s", "s", "humanizeNoSmallPrefix"),
    "bytes": ("bytes", "B", "humanize1024"),
    "ratio": ("percentunit", "", "humanizeNoSmallPrefix"),
    "reqps": ("reqps", "/s", "humanizeNoSmallPrefix"),
    "ops": ("ops", "/s", "humanizeNoSmallPrefix"),
    "short": ("short", "", "humanizeNoSmallPrefix"),
    "x": ("suffix:×", "×", "humanizeNoSmallPrefix"),
}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""  # Grafana's legendFormat: `{{route}}`; the console pages get `[[route]]`


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    slug: str
    title: str
    description: str
    panels: tuple[Panel, ...]


def panel(title: str, expr: str, unit: str, legend: str = "", description: str = "") -> Panel:
    return Panel(title, (Query(expr, legend),), unit, description)


def quantiles(title: str, histogram: str, unit: str, window: str = "5m", by: str = "") -> Panel:
    """p50 and p95 of a histogram (per label `by` when given)."""
    labels = f"{by}, le" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return Panel(
        title,
        tuple(
            Query(
                f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket[{window}])))", f"{legend}p{name}"
            )
            for q, name in (("0.5", "50"), ("0.95", "95"))
        ),
        unit,
    )


HTTP = "assistant_http_request_duration_seconds"

DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "overview",
        "Overview",
        "Traffic, errors, latency and saturation of the whole app.",
        (
            panel("Requests by status", f"sum by (status) (rate({HTTP}_count[5m]))", "reqps", "{{status}}"),
            panel("5xx ratio", "assistant:http_errors:ratio_rate5m", "ratio", "5xx"),
            panel("p95 latency, pages and API", "assistant:http_request_duration_seconds:p95_5m", "s", "{{kind}}"),
            panel(
                "Slowest routes (p95)",
                f"topk(5, histogram_quantile(0.95, sum by (route, le) (rate({HTTP}_bucket[5m]))))",
                "s",
                "{{route}}",
            ),
            panel("WebSocket connections", "sum by (kind) (assistant_websocket_connections)", "short", "{{kind}}"),
            panel("Job queue length", "max by (queue) (assistant_job_queue_length)", "short", "{{queue}}"),
            panel("CPU busy", "assistant:node_cpu_busy:ratio_rate5m", "ratio", "cpu"),
            panel("Memory used", "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "ratio", "memory"),
            panel("Disk space left", "assistant:filesystem_avail:ratio", "ratio", "{{mountpoint}}"),
            panel("Targets up", "min by (job) (up)", "short", "{{job}}"),
            panel("nginx connections", "nginx_connections_active", "short", "active"),
            panel("Redis memory", "redis_memory_used_bytes", "bytes", "{{instance}}"),
            panel("PostgreSQL connections", "sum by (state) (pg_stat_activity_count)", "short", "{{state}}"),
        ),
    ),
    Dashboard(
        "transcription",
        "Transcription jobs",
        "Queues, wait, speed and failures of the transcription workers.",
        (
            panel("Queue length", "max by (queue) (assistant_job_queue_length)", "short", "{{queue}}"),
            panel("Queue wait (p95)", "assistant:job_wait_seconds:p95_5m", "s", "{{queue}}"),
            panel(
                "Transcriptions by outcome",
                "sum by (outcome) (rate(assistant_transcriptions_total[5m]))",
                "ops",
                "{{outcome}}",
            ),
            panel("Failure ratio (30 min)", "assistant:transcriptions:failure_ratio_rate30m", "ratio", "failed"),
            panel(
                "Speed, × real time (median)",
                "histogram_quantile(0.5, sum by (model, le) (rate(assistant_transcription_speed_ratio_bucket[30m])))",
                "x",
                "{{model}}",
            ),
            panel(
                "Step time (p95)",
                "histogram_quantile(0.95, sum by (step, le) (rate(assistant_transcription_step_seconds_bucket[5m])))",
                "s",
                "{{step}}",
            ),
            panel(
                "Audio transcribed per second",
                "sum by (model) (rate(assistant_transcription_audio_seconds_total[5m]))",
                "x",
                "{{model}}",
            ),
            panel(
                "Model load time (mean)",
                "sum by (model) (rate(assistant_model_load_seconds_sum[1h]))"
                " / sum by (model) (rate(assistant_model_load_seconds_count[1h]))",
                "s",
                "{{model}}",
            ),
            panel(
                "Jobs requeued (1 h)",
                "sum by (kind) (increase(assistant_jobs_requeued_total[1h]))",
                "short",
                "{{kind}}",
            ),
            panel(
                "Upload size (p95)",
                "histogram_quantile(0.95, sum by (endpoint, le) (rate(assistant_upload_size_bytes_bucket[1h])))",
                "bytes",
                "{{endpoint}}",
            ),
        ),
    ),
    Dashboard(
        "live",
        "Live streams",
        "Live transcription: streams, latency of words, lag and skipped audio.",
        (
            panel("Live streams", "sum(assistant_live_streams)", "short", "streams"),
            quantiles("Word first seen after its audio", "assistant_live_first_seen_latency_seconds", "s"),
            quantiles("Word final after its audio", "assistant_live_final_latency_seconds", "s"),
            panel("Lag (p95)", "assistant:live_lag_seconds:p95_5m", "s", "lag"),
            panel("Skipped audio ratio", "assistant:live_skipped_audio:ratio_rate5m", "ratio", "skipped"),
            quantiles("Inference step", "assistant_live_inference_seconds", "s"),
            panel("Live WebSockets", 'sum(assistant_websocket_connections{kind="live"})', "short", "connections"),
        ),
    ),
    Dashboard(
        "ai",
        "AI workflows",
        "Workflow runs, LLM latency and throughput, the AI cache.",
        (
            panel(
                "Runs by outcome", "sum by (outcome) (rate(assistant_workflow_runs_total[5m]))", "ops", "{{outcome}}"
            ),
            quantiles("Run time", "assistant_workflow_run_seconds", "s"),
            panel(
                "LLM time to first token (p95)", "assistant:llm_time_to_first_token_seconds:p95_5m", "s", "{{model}}"
            ),
            panel(
                "LLM tokens per second (median)",
                "histogram_quantile(0.5, sum by (model, le) (rate(assistant_llm_tokens_per_second_bucket[5m])))",
                "short",
                "{{model}}",
            ),
            panel("LLM tokens", "sum by (kind) (rate(assistant_llm_tokens_total[5m]))", "ops", "{{kind}}"),
            panel(
                "LLM requests by outcome",
                "sum by (outcome) (rate(assistant_llm_requests_total[5m]))",
                "ops",
                "{{outcome}}",
            ),
            panel("AI cache hit ratio (30 min)", "assistant:ai_cache:hit_ratio_rate30m", "ratio", "{{node}}"),
            panel(
                "Workflow queue wait (p95)", 'assistant:job_wait_seconds:p95_5m{queue="workflows"}', "s", "workflows"
            ),
        ),
    ),
    Dashboard(
        "graph",
        "Knowledge graph",
        "Neo4j queries by name and the outbox that feeds the graph.",
        (
            panel("Query time (p95)", "assistant:neo4j_query_seconds:p95_5m", "s", "{{query}}"),
            panel(
                "Queries per second",
                "sum by (query) (rate(assistant_neo4j_query_seconds_count[5m]))",
                "ops",
                "{{query}}",
            ),
            panel("Query errors", "sum by (query) (rate(assistant_neo4j_query_errors_total[5m]))", "ops", "{{query}}"),
            panel("Outbox backlog", "max(assistant_graph_outbox_backlog)", "short", "changes"),
            panel("Oldest change waiting", "max(assistant_graph_outbox_oldest_seconds)", "s", "oldest"),
            panel("Failed changes", "max(assistant_graph_outbox_failed)", "short", "failed"),
        ),
    ),
)


def expressions() -> list[tuple[str, str, str]]:
    """(dashboard slug, panel title, expr) of every query: deploy/check.py has promtool parse them."""
    return [(d.slug, p.title, q.expr) for d in DASHBOARDS for p in d.panels for q in p.queries]


# --- Prometheus console pages ---------------------------------------------------------------------


def _console_legend(legend: str) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", r"[[\1]]", legend)


def console_page(dashboard: Dashboard) -> str:
    lines = [
        "{{/* Generated by deploy/observability/dashboards.py: edit that, then run it. */}}",
        '{{ template "head" . }}',
        "",
    ]
    if dashboard.slug == "overview":
        # What is up right now, next to the graphs.
        lines += [
            '{{ template "prom_right_table_head" }}',
            '<tr><th colspan="2">Targets</th></tr>',
            '{{ range query "up" | sortByLabel "job" }}',
            "<tr><td>{{ .Labels.job }} {{ .Labels.instance }}</td>"
            "<td>{{ if eq .Value 1.0 }}up{{ else }}<strong>down</strong>{{ end }}</td></tr>",
            '{{ else }}<tr><td colspan="2">no targets yet</td></tr>{{ end }}',
            '{{ template "prom_right_table_tail" }}',
            "",
        ]
    lines += [
        '{{ template "prom_content_head" . }}',
        f"<h1>{dashboard.title}</h1>",
        f"<p>{dashboard.description}</p>",
    ]
    for index, item in enumerate(dashboard.panels):
        _, y_units, formatter = UNITS[item.unit]
        options = {
            "expr": [q.expr for q in item.queries],
            "name": [_console_legend(q.legend) or q.expr for q in item.queries],
            "yUnits": y_units,
            "min": 0,
        }
        node = f"panel{index}"
        lines += [
            f"<h3>{item.title}</h3>",
            f'<div id="{node}"></div>',
            "<script>",
            "new PromConsole.Graph(Object.assign({",
            f'  node: document.querySelector("#{node}"),',
            f"  yAxisFormatter: PromConsole.NumberFormatter.{formatter},",
            f"  yHoverFormatter: PromConsole.NumberFormatter.{formatter},",
            f"}}, {json.dumps(options, ensure_ascii=False)}));",
            "</script>",
        ]
    lines += ['{{ template "prom_content_tail" . }}', "", '{{ template "tail" }}', ""]
    return "\n".join(lines)


def console_library() -> str:
    items = "\n".join(f'{{{{ template "_menuItem" (args . "{d.slug}.html" "{d.title}") }}}}' for d in DASHBOARDS)
    return f"""{{{{/* Generated by deploy/observability/dashboards.py. Replaces the example menu.lib. */}}}}
{{{{ define "navbar" }}}}
<nav class="navbar fixed-top navbar-expand-sm navbar-dark bg-dark">
  <div class="container-fluid">
    <a class="navbar-brand" href="{{{{ pathPrefix }}}}/consoles/overview.html">Whisper Assistant</a>
    <ul class="nav navbar-nav">
      <li class="nav-item"><a class="nav-link" href="{{{{ pathPrefix }}}}/alerts">Alerts</a></li>
      <li class="nav-item"><a class="nav-link" href="{{{{ pathPrefix }}}}/targets">Targets</a></li>
      <li class="nav-item"><a class="nav-link" href="{{{{ pathPrefix }}}}/graph">Query</a></li>
    </ul>
  </div>
</nav>
{{{{ end }}}}

{{{{ define "menu" }}}}
<div class="prom_lhs_menu row">
<nav class="col-md-2 md-block bg-dark sidebar prom_lhs_menu_nav">
<div class="sidebar-sticky">
<ul class="nav flex-column">
{items}
</ul>
</div>
</nav>
</div>
{{{{ end }}}}

{{{{ define "_menuItem" }}}}
  <li {{{{ if eq .arg0.Path .arg1 }}}} class="prom_lhs_menu_selected nav-item" {{{{ end }}}}><a class="nav-link" href="{{{{ .arg1 }}}}">{{{{ .arg2 }}}}</a></li>
{{{{ end }}}}
"""


# --- Grafana --------------------------------------------------------------------------------------

WIDTH, HEIGHT = 12, 8


def grafana_dashboard(dashboard: Dashboard) -> dict:
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for index, item in enumerate(dashboard.panels):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": item.title,
                "description": item.description,
                "datasource": datasource,
                "gridPos": {"h": HEIGHT, "w": WIDTH, "x": (index % 2) * WIDTH, "y": (index // 2) * HEIGHT},
                "fieldConfig": {"defaults": {"unit": UNITS[item.unit][0], "min": 0}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
                "targets": [
                    {"refId": chr(ord("A") + n), "datasource": datasource, "expr": q.expr, "legendFormat": q.legend}
                    for n, q in enumerate(item.queries)
                ],
            }
        )
    return {
        "uid": f"assistant-{dashboard.slug}",
        "title": f"Whisper Assistant: {dashboard.title}",
        "description": dashboard.description,
        "tags": ["whisper-assistant"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus (Whisper Assistant)", "value": DATASOURCE_UID},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


GRAFANA_DATASOURCE = f"""# Grafana datasource provisioning (generated by deploy/observability/dashboards.py).
# Copy to /etc/grafana/provisioning/datasources/ and point url at the Prometheus `make run` starts.
apiVersion: 1
datasources:
  - name: Prometheus (Whisper Assistant)
    uid: {DATASOURCE_UID}
    type: prometheus
    access: proxy
    url: http://127.0.0.1:9090
    isDefault: false
    editable: true
"""

GRAFANA_PROVIDER = """# Grafana dashboards provisioning (generated by deploy/observability/dashboards.py).
# Copy to /etc/grafana/provisioning/dashboards/ and the JSON files to `path`.
apiVersion: 1
providers:
  - name: whisper-assistant
    folder: Whisper Assistant
    type: file
    disableDeletion: false
    allowUiUpdates: true
    options:
      path: /var/lib/grafana/dashboards/whisper-assistant
"""


def generated() -> dict[Path, str]:
    files = {CONSOLES / f"{d.slug}.html": console_page(d) for d in DASHBOARDS}
    files[LIBRARY] = console_library()
    for d in DASHBOARDS:
        files[GRAFANA / "dashboards" / f"{d.slug}.json"] = (
            json.dumps(grafana_dashboard(d), indent=2, ensure_ascii=False) + "\n"
        )
    files[GRAFANA / "provisioning" / "datasources" / "assistant.yml"] = GRAFANA_DATASOURCE
    files[GRAFANA / "provisioning" / "dashboards" / "assistant.yml"] = GRAFANA_PROVIDER
    return files


def stale() -> list[Path]:
    """Generated files missing or different from what this module generates now."""
    return [path for path, text in generated().items() if not path.exists() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when a generated file is out of date")
    if parser.parse_args(argv).check:
        paths = stale()
        for path in paths:
            print(f"{path.relative_to(HERE.parent.parent)}: out of date: python -m deploy.observability.dashboards")
        return 1 if paths else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
