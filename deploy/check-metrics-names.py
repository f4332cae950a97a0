#!/usr/bin/env python3
"""Check that the dashboard and the alert rules only use metrics fairgate exports.

    python3 deploy/check-metrics-names.py http://127.0.0.1:9464/metrics
    python3 deploy/check-metrics-names.py metrics.txt

Extracts every metric name referenced in the PromQL of
deploy/grafana/fairgate-dashboard.json (panel targets, template variables,
annotations) and deploy/prometheus/fairgate-rules.yml (rule expressions), and
checks each against the metric families in a Prometheus text exposition (a file,
or a URL to fetch). `_bucket`, `_sum` and `_count` suffixes of histogram and
summary families are accepted; `up` (a Prometheus-made series) is ignored.

A labelled family with no series yet (a counter vector nothing has incremented)
is absent from a live exposition. So names that are missing from the exposition
but declared in src/metrics.rs are reported as warnings, not errors, unless
--strict is given. --source FILE names the Rust file (default: src/metrics.rs
next to this script's folder, if present); --no-source disables this.

Exit status: 0 when every name is known, 1 when some are unknown (listed on
stderr), 2 on usage or input errors.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DASHBOARD = HERE / "grafana" / "fairgate-dashboard.json"
DEFAULT_RULES = HERE / "prometheus" / "fairgate-rules.yml"
DEFAULT_SOURCE = HERE.parent / "src" / "metrics.rs"

SUFFIXES = ("_bucket", "_sum", "_count")
# Series Prometheus makes itself, not exported by fairgate.
IGNORED = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
    "bool", "and", "or", "unless", "atan2", "inf", "nan", "start", "end",
}

IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


# --------------------------------------------------------------------------
# Collecting expressions
# --------------------------------------------------------------------------

def grafana_query(q: str) -> list[str]:
    """PromQL inside a Grafana variable query (label_values, query_result, ...)."""
    q = q.strip()
    m = re.fullmatch(r"label_values\((.*)\)", q, re.S)
    if m:
        inner = m.group(1)
        # label_values(expr, label) -> expr; label_values(label) -> nothing.
        depth, cut = 0, None
        for i, ch in enumerate(inner):
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
            elif ch == "," and depth == 0:
                cut = i
        return [inner[:cut]] if cut is not None else []
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    if m:
        return [m.group(1)]
    if re.fullmatch(r"(label_names|metrics)\(.*\)", q, re.S):
        return []
    return [q] if q else []


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    data = json.loads(path.read_text())
    out: list[tuple[str, str]] = []

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title") or node.get("name") or where
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    out.append((f"{path.name}: {title}", value))
                elif key in ("query", "definition") and isinstance(value, str) and node.get("type") == "query":
                    for e in grafana_query(value):
                        out.append((f"{path.name}: variable {title}", e))
                elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                    for e in grafana_query(value["query"]):
                        out.append((f"{path.name}: variable {title}", e))
                else:
                    walk(value, title)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(data, path.name)
    return out


def rules_exprs(path: Path) -> list[tuple[str, str]]:
    try:
        import yaml  # type: ignore
    except ImportError:
        sys.exit("check-metrics-names: PyYAML is needed (pip install pyyaml)")
    data = yaml.safe_load(path.read_text())
    out = []
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record") or "?"
            out.append((f"{path.name}: {name}", str(rule["expr"])))
            if rule.get("record"):
                IGNORED.add(rule["record"])  # recorded names are ours, not fairgate's
    return out


# --------------------------------------------------------------------------
# Extracting metric names from PromQL
# --------------------------------------------------------------------------

def metric_names(expr: str) -> set[str]:
    s = expr
    # Comments, string literals (label values, label_replace arguments).
    s = re.sub(r"#[^\n]*", " ", s)
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', s)
    # Grafana variables: ${x}, ${x:fmt}, $x, [[x]].
    s = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]", " 1 ", s)
    # Label matchers {...}, ranges and subqueries [...].
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    # Label lists of by/without/on/ignoring/group_left/group_right.
    s = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
        " ", s)
    # offset 5m, @ 123 / @ start().
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)
    s = re.sub(r"@\s*(start\(\)|end\(\)|[0-9.]+)", " ", s)
    names = set()
    for m in re.finditer(rf"(?<![\w.:]){IDENT}", s):
        word = m.group(0)
        rest = s[m.end():]
        if re.match(r"\s*\(", rest):
            continue  # a function or aggregation
        if word.lower() in KEYWORDS:
            continue
        if re.fullmatch(r"[0-9.eE+-]+|0x[0-9a-fA-F]+", word):
            continue
        names.add(word)
    return names


# --------------------------------------------------------------------------
# Reading the exposition and the source
# --------------------------------------------------------------------------

def read_exposition(where: str) -> str:
    if re.match(r"https?://", where):
        req = urllib.request.Request(where, headers={"Accept": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode("utf-8")
    return Path(where).read_text()


def exposed(text: str) -> tuple[set[str], set[str], dict[str, str]]:
    """Family names, sample names, and family types."""
    families, samples, types = set(), set(), {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = re.match(rf"#\s*(HELP|TYPE)\s+({IDENT})(?:\s+(\S+))?", line)
        if m:
            families.add(m.group(2))
            if m.group(1) == "TYPE" and m.group(3):
                types[m.group(2)] = m.group(3)
            continue
        if line.startswith("#"):
            continue
        m = re.match(IDENT, line)
        if m:
            samples.add(m.group(0))
    return families, samples, types


def declared(source: Path) -> set[str]:
    return set(re.findall(r'"(fairgate_[a-z0-9_]+)"', source.read_text()))


def known(name: str, names: set[str]) -> bool:
    if name in names:
        return True
    return any(name.endswith(sfx) and name[: -len(sfx)] in names for sfx in SUFFIXES)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("exposition", help="Prometheus text exposition: a file or an http(s) URL (e.g. http://127.0.0.1:9464/metrics)")
    ap.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD)
    ap.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    ap.add_argument("--source", type=Path, default=None,
                    help="Rust file declaring the metrics (default: src/metrics.rs of this checkout, if present)")
    ap.add_argument("--no-source", action="store_true", help="do not consult the source; only the exposition counts")
    ap.add_argument("--strict", action="store_true", help="names declared in the source but absent from the exposition are errors")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every referenced name")
    args = ap.parse_args()

    try:
        text = read_exposition(args.exposition)
    except Exception as e:  # noqa: BLE001
        print(f"check-metrics-names: cannot read {args.exposition}: {e}", file=sys.stderr)
        return 2
    families, samples, _types = exposed(text)
    if not families and not samples:
        print(f"check-metrics-names: no metrics in {args.exposition}", file=sys.stderr)
        return 2
    live = families | samples

    source_names: set[str] = set()
    if not args.no_source:
        src = args.source or (DEFAULT_SOURCE if DEFAULT_SOURCE.exists() else None)
        if src is not None:
            source_names = declared(src)

    refs: dict[str, set[str]] = {}
    for where, expr in dashboard_exprs(args.dashboard) + rules_exprs(args.rules):
        for n in metric_names(expr):
            if n in IGNORED:
                continue
            refs.setdefault(n, set()).add(where)

    unknown, not_yet = {}, {}
    for n, wheres in sorted(refs.items()):
        if known(n, live):
            continue
        if known(n, source_names):
            not_yet[n] = wheres
        else:
            unknown[n] = wheres

    if args.verbose:
        for n in sorted(refs):
            state = "unknown" if n in unknown else ("declared, not exported yet" if n in not_yet else "ok")
            print(f"{n}: {state}")

    for n, wheres in not_yet.items():
        print(f"{'error' if args.strict else 'warning'}: {n} is declared in the source but not in the exposition "
              f"(no series yet?); used in: {', '.join(sorted(wheres))}", file=sys.stderr)
    for n, wheres in unknown.items():
        print(f"error: unknown metric {n}; used in: {', '.join(sorted(wheres))}", file=sys.stderr)

    bad = len(unknown) + (len(not_yet) if args.strict else 0)
    print(f"check-metrics-names: {len(refs)} metric names referenced, "
          f"{len(refs) - len(unknown) - len(not_yet)} exported, {len(not_yet)} declared but not exported yet, "
          f"{len(unknown)} unknown")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
