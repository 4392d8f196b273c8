"""The evaluation report: provenance, protocol settings, per-group rows and means, as JSON and Markdown."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

REPORT_METRICS = ("AUC30", "AUC15", "AUC5", "AUC3", "DepthAbsRel", "DepthDelta1.25", "PointOverall")
TABLE_COLUMNS = ("sequences", "pairs", *REPORT_METRICS)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if column.startswith("AUC") else f"{value:.4f}"
    return str(value)


def table_lines(report: dict[str, Any], markdown: bool) -> list[str]:
    """Per-group rows and the mean row, as an aligned text table or a Markdown table."""
    first = "category" if report["dataset"] == "co3d" else "scene"
    rows = [[name] + [_cell(c, row[c]) for c in TABLE_COLUMNS] for name, row in report["groups"].items()]
    rows.append(["mean"] + [""] * 2 + [_cell(c, report["mean"].get(c)) for c in REPORT_METRICS])
    header = [first, *TABLE_COLUMNS]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in [header, *rows]]  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    protocol, model, runtime = report["protocol"], report["model"], report["runtime"]
    lines = [f"# VGGT evaluation on {report['dataset']}", ""]
    if report["dataset"] == "co3d":
        if report["differences_from_published"]:
            lines += ["**Settings differ from the published Co3D protocol:**", ""]
            lines += [f"- {difference}" for difference in report["differences_from_published"]] + [""]
        else:
            lines += ["Settings follow the published Co3D camera-pose protocol.", ""]
    lines += [*table_lines(report, markdown=True), ""]
    lines += [
        "AUC in percent (higher is better); DepthAbsRel lower is better; DepthDelta1.25 is a fraction; PointOverall "
        "(mean of accuracy and completeness, ground-truth units; both in the JSON) lower is better.",
        "",
    ]
    lines += ["## Provenance", ""]
    lines += [f"- model: `{model['source']}` (sha256 `{model['weights_sha256']}`), config `{model['config']}`"]
    lines += [f"- device: {runtime['device']} ({runtime['device_name']}), dtype {runtime['dtype']}, TF32 off"]
    lines += [f"- torch {runtime['torch']}, vggt-npu {runtime['vggt_npu']}, written {report['created']}"]
    lines += ["", "## Protocol settings", ""]
    lines += [f"- {key}: {json.dumps(value)}" for key, value in protocol.items()]
    skipped = {group: reasons for group, reasons in report["skipped"].items() if reasons}
    if skipped:
        lines += ["", "## Skipped sequences", ""]
        lines += [f"- {group}: {reason}" for group, reasons in skipped.items() for reason in reasons]
    return "\n".join(lines) + "\n"


def json_ready(value: Any) -> Any:
    """`value` with every non-finite float (NaN, inf: a metric with nothing to average) as None, so that the report
    is valid JSON (json.dumps would write the bare NaN that JSON parsers refuse)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """`{dataset}_eval.json` and `{dataset}_eval.md` in `out` (created); only these two files are written."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out / f"{report['dataset']}_eval.json", out / f"{report['dataset']}_eval.md"
    _write_atomically(json_path, json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")
    _write_atomically(markdown_path, markdown(report))
    return json_path, markdown_path
