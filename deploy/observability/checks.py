"""Offline checks of deploy/observability (deploy/check.py runs them: `make deploy-check`).

- the generated dashboards (consoles, Grafana JSON and provisioning) match dashboards.py;
- the rendered prometheus.yml passes `promtool check config` (which also checks the rule files);
- the rules pass `promtool check rules`, and their unit tests `promtool test rules`;
- every dashboard expression parses (promtool checks them as recording rules);
- the Grafana dashboards' structure: unique uids and panel ids, the datasource variable every
  panel uses, gridPos inside the 24 columns and not overlapping, one refId per target;
- every assistant_* metric the rules and dashboards name is one the app defines (common/metrics.py);
- the rendered alertmanager.yml passes `amtool check-config`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from . import dashboards
from .config import RULES_DIR, Stack, render_alertmanager, render_prometheus

ROOT = Path(__file__).resolve().parent.parent.parent
RULE_TESTS = RULES_DIR / "tests"
# Where the app names its metrics (the metrics exist only once these modules are there).
METRIC_SOURCES = (ROOT / "common" / "metrics.py", ROOT / "assistant_site" / "metrics.py")
METRIC = re.compile(r"\bassistant_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _failed(what: str, result: subprocess.CompletedProcess[str]) -> Iterator[str]:
    if result.returncode:
        output = (result.stdout + result.stderr).strip().splitlines()
        yield f"{what}: " + " | ".join(line.strip() for line in output if line.strip())[:2000]


def check_generated() -> Iterator[str]:
    for path in dashboards.stale():
        yield f"{path.relative_to(ROOT)}: out of date with dashboards.py (python -m deploy.observability.dashboards)"


def check_prometheus(promtool: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="observability-check-") as tmp:
        stack = Stack(
            var_dir=Path(tmp),
            web_target="127.0.0.1:8001",
            redis_urls={"broker": "redis://127.0.0.1:6379/0", "cache": "redis://127.0.0.1:6380/0"},
            database_url="postgres://assistant@127.0.0.1:5432/assistant",
        )
        config = Path(tmp) / "prometheus.yml"
        config.write_text(render_prometheus(stack))
        yield from _failed("promtool check config", _run([promtool, "check", "config", str(config)]))
        rules = sorted(str(path) for path in RULES_DIR.glob("*.yml"))
        yield from _failed("promtool check rules", _run([promtool, "check", "rules", *rules]))
        tests = sorted(str(path) for path in RULE_TESTS.glob("*.yml"))
        if not tests:
            yield f"{RULE_TESTS.relative_to(ROOT)}: no rule tests"
        yield from _failed("promtool test rules", _run([promtool, "test", "rules", *tests]))
        # The dashboards' expressions, as recording rules: promtool parses each one.
        exprs = dashboards.expressions()
        as_rules = {
            "groups": [
                {
                    "name": "dashboards",
                    "rules": [{"record": f"dashboard:expr_{i}", "expr": e} for i, (_, _, e) in enumerate(exprs)],
                }
            ]
        }
        path = Path(tmp) / "dashboards.yml"
        path.write_text(yaml.safe_dump(as_rules))
        result = _run([promtool, "check", "rules", str(path)])
        if result.returncode:
            # Name the panel: promtool only says which rule number failed.
            for number in sorted({int(n) for n in re.findall(r"dashboard:expr_(\d+)", result.stdout + result.stderr)}):
                slug, title, expr = exprs[number]
                yield f"dashboard {slug}, panel {title!r}: PromQL does not parse: {expr}"
            yield from _failed("promtool check rules (dashboard expressions)", result)


def check_grafana() -> Iterator[str]:
    uids: dict[str, Path] = {}
    variable = "${datasource}"
    for path in sorted((dashboards.GRAFANA / "dashboards").glob("*.json")):
        where = str(path.relative_to(ROOT))
        board = json.loads(path.read_text())
        for key in ("uid", "title", "panels", "schemaVersion", "templating"):
            if key not in board:
                yield f"{where}: no {key}"
        uid = board.get("uid", "")
        if uid in uids:
            yield f"{where}: uid {uid} also in {uids[uid].name}"
        uids[uid] = path
        if not 0 < len(uid) <= 40:
            yield f"{where}: uid must be 1 to 40 characters"
        names = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
        if names.get("datasource", {}).get("type") != "datasource" or names["datasource"].get("query") != "prometheus":
            yield f"{where}: no `datasource` variable of Prometheus datasources"
        ids: set[int] = set()
        cells: dict[tuple[int, int], str] = {}
        for panel in board.get("panels", []):
            title = panel.get("title", "?")
            if panel.get("id") in ids:
                yield f"{where}: panel id {panel.get('id')} twice"
            ids.add(panel.get("id"))
            if panel.get("datasource", {}).get("uid") != variable:
                yield f"{where}, {title}: datasource is not {variable}"
            grid = panel.get("gridPos", {})
            if not all(isinstance(grid.get(k), int) for k in "xywh"):
                yield f"{where}, {title}: gridPos needs integer x, y, w, h"
                continue
            if grid["x"] < 0 or grid["w"] < 1 or grid["x"] + grid["w"] > 24 or grid["h"] < 1:
                yield f"{where}, {title}: gridPos outside the 24 columns"
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    if (x, y) in cells:
                        yield f"{where}, {title}: overlaps {cells[x, y]}"
                        break
                    cells[x, y] = title
                else:
                    continue
                break
            targets = panel.get("targets", [])
            if not targets:
                yield f"{where}, {title}: no targets"
            ref_ids = [t.get("refId") for t in targets]
            if len(set(ref_ids)) != len(ref_ids) or not all(t.get("expr") for t in targets):
                yield f"{where}, {title}: each target needs an expr and its own refId"
            if any(t.get("datasource", {}).get("uid") != variable for t in targets):
                yield f"{where}, {title}: a target's datasource is not {variable}"
    expected = {f"assistant-{d.slug}" for d in dashboards.DASHBOARDS}
    if set(uids) != expected:
        yield f"grafana/dashboards: uids {sorted(uids)} are not the dashboards' {sorted(expected)}"
    provisioning = dashboards.GRAFANA / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "assistant.yml").read_text())
    if [s.get("uid") for s in sources.get("datasources", [])] != [dashboards.DATASOURCE_UID]:
        yield f"grafana provisioning: the datasource's uid is not {dashboards.DATASOURCE_UID}"
    providers = yaml.safe_load((provisioning / "dashboards" / "assistant.yml").read_text())
    if not all(p.get("type") == "file" and p.get("options", {}).get("path") for p in providers.get("providers", [])):
        yield "grafana provisioning: each dashboards provider needs type file and options.path"


def _referenced_metrics() -> dict[str, str]:
    """assistant_* metric names the rules and dashboards use -> where (histogram suffixes dropped)."""
    found: dict[str, str] = {}
    texts = [(path.name, path.read_text()) for path in sorted(RULES_DIR.glob("*.yml"))]
    texts += [(f"dashboard {slug}", expr) for slug, _, expr in dashboards.expressions()]
    for where, text in texts:
        for name in METRIC.findall(text):
            for suffix in SUFFIXES:
                if name.endswith(suffix):
                    name = name.removesuffix(suffix)
                    break
            found.setdefault(name, where)
    return found


def check_metric_names(skipped: list[str]) -> Iterator[str]:
    sources = [path for path in METRIC_SOURCES if path.exists()]
    if not sources:
        skipped.append("metric names (common/metrics.py not here)")
        return
    defined = set()
    for path in sources:
        defined |= set(re.findall(r"[\"'](assistant_[a-z0-9_]+)[\"']", path.read_text()))
    for name, where in sorted(_referenced_metrics().items()):
        if name not in defined:
            yield f"{where}: {name} is not a metric the app defines ({', '.join(p.name for p in sources)})"


def check_alertmanager(skipped: list[str]) -> Iterator[str]:
    amtool = shutil.which("amtool")
    if amtool is None:
        skipped.append("amtool check-config (apt-get install prometheus-alertmanager)")
        return
    with tempfile.TemporaryDirectory(prefix="observability-check-") as tmp:
        stack = Stack(var_dir=Path(tmp), web_target="", redis_urls={}, database_url="")
        config = Path(tmp) / "alertmanager.yml"
        config.write_text(render_alertmanager(stack))
        yield from _failed("amtool check-config", _run([amtool, "check-config", str(config)]))


def problems(skipped: list[str]) -> Iterator[str]:
    yield from check_generated()
    promtool = shutil.which("promtool")
    if promtool is None:
        yield "promtool not found (apt-get install prometheus)"
    else:
        yield from check_prometheus(promtool)
    yield from check_grafana()
    yield from check_metric_names(skipped)
    yield from check_alertmanager(skipped)
