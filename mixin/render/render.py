#!/usr/bin/env python3
"""Draws a dashboard's panels from their data into a PNG, for the documentation.

Grafana is not available here, so this is not a Grafana screenshot: it draws, with matplotlib,
the data every panel's queries return from a real Prometheus, laid out on the dashboard's own
grid (gridPos), with its titles, units, legends, thresholds and table columns. The data comes
from tests/monitoring_mixin.rs: with HAMI_MIXIN_RENDER_DIR set, its dashboard test runs the
server on the fixture cluster against a real Prometheus evaluating the chart's recording rules,
moves the fixture exporters' values for HAMI_MIXIN_RENDER_SECONDS, and writes every panel's
query results (multi-value variables set to "All") to <dir>/<dashboard uid>.json.

Run (about ten minutes; needs the Debian prometheus and victoria-metrics packages, as the tests):
    python3 mixin/render/render.py                      # runs the test, draws docs/dashboard-cluster-overview.png
    python3 mixin/render/render.py --seconds 120        # a shorter run
    python3 mixin/render/render.py --data DIR           # draw from data written earlier
    python3 mixin/render/render.py --dashboard hami-device-detail --out docs/x.png
Needs: pip install matplotlib. CI does not run this.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# Grafana's dark theme, approximately.
BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e8e"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0",
           "#37872d", "#fade2a", "#447ebc", "#c15c17", "#890f02", "#0a437c", "#6d1f62", "#584477"]
COLORS = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "blue": "#5794f2", "yellow": "#fade2a"}

GRID_UNIT_PX = 30  # one gridPos height unit
WIDTH_PX = 1800


def fmt(value: float | None, unit: str | None, decimals: int | None = None) -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    unit = unit or "none"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "mbytes":  # MiB
        for scale, suffix in ((1024 * 1024, "TiB"), (1024, "GiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {suffix}"
        return f"{value:.0f} MiB"
    if unit == "bytes":
        for scale, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {suffix}"
        return f"{value:.0f} B"
    if unit == "celsius":
        return f"{value:.0f} °C"
    if unit == "watt":
        return f"{value:.0f} W"
    if unit == "s":
        if abs(value) >= 3600:
            return f"{value / 3600:.1f} h"
        if abs(value) >= 60:
            return f"{value / 60:.1f} min"
        if abs(value) >= 1 or value == 0:
            return f"{value:.2f} s"
        return f"{value * 1000:.0f} ms"
    if unit in ("ops", "reqps"):
        return f"{value:.2f}/s"
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if abs(value) >= 10000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def legend(template: str, metric: dict) -> str:
    if not template or template == "__auto":
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
        return inner or metric.get("__name__", "value")
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template)


def series_of(target: dict) -> list[tuple[str, list[datetime], list[float]]]:
    out = []
    for r in target["result"]:
        points = r.get("values") or ([r["value"]] if "value" in r else [])
        times = [datetime.fromtimestamp(float(t), tz=timezone.utc) for t, _ in points]
        values = [float(v) for _, v in points]
        out.append((legend(target.get("legendFormat", ""), r["metric"]), times, values))
    return out


def last(values: list[float]) -> float | None:
    for v in reversed(values):
        if v == v:
            return v
    return None


def threshold_color(value: float | None, defaults: dict, fallback: str = COLORS["green"]) -> str:
    steps = defaults.get("thresholds", {}).get("steps", [])
    if value is None or not steps or defaults.get("color", {}).get("mode") != "thresholds":
        return fallback
    color = steps[0]["color"]
    for step in steps[1:]:
        if step.get("value") is not None and value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


def mapped(value: float | None, defaults: dict) -> str | None:
    for mapping in defaults.get("mappings", []):
        if mapping.get("type") == "value" and value is not None:
            hit = mapping["options"].get(f"{value:g}")
            if hit:
                return hit.get("text")
    return None


class Canvas:
    def __init__(self, data: dict) -> None:
        panels = data["panels"] + data.get("rows", [])
        units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
        self.header_px = 70
        self.footer_px = 34
        height_px = units * GRID_UNIT_PX + self.header_px + self.footer_px
        self.fig = plt.figure(figsize=(WIDTH_PX / 100, height_px / 100), dpi=100, facecolor=BG)
        self.width, self.height = WIDTH_PX, height_px

    def rect(self, grid: dict, pad: float = 4) -> list[float]:
        """Figure coordinates [left, bottom, width, height] of a gridPos, with padding in px."""
        x = grid["x"] / 24 * (self.width - 16) + 8 + pad
        w = grid["w"] / 24 * (self.width - 16) - 2 * pad
        top = self.header_px + grid["y"] * GRID_UNIT_PX + pad
        h = grid["h"] * GRID_UNIT_PX - 2 * pad
        return [x / self.width, 1 - (top + h) / self.height, w / self.width, h / self.height]


def panel_frame(canvas: Canvas, panel: dict):
    left, bottom, width, height = canvas.rect(panel["gridPos"])
    frame = canvas.fig.add_axes([left, bottom, width, height])
    frame.set_xlim(0, 1)
    frame.set_ylim(0, 1)
    frame.axis("off")
    frame.add_patch(FancyBboxPatch((0, 0), 1, 1, boxstyle="round,pad=0,rounding_size=0.01",
                                   facecolor=PANEL, edgecolor=BORDER, linewidth=1, transform=frame.transAxes))
    title_h = 26 / (height * canvas.height)
    frame.text(0.012, 1 - title_h / 2, panel["title"], color=TEXT, fontsize=10.5, fontweight="bold",
               va="center", ha="left")
    inner = [left + 0.008 * width, bottom + 0.04 * height, width * 0.984, height - 0.04 * height - title_h * height]
    return frame, inner


def style_axes(ax, unit: str | None) -> None:
    ax.set_facecolor(PANEL)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(BORDER)
    ax.tick_params(colors=MUTED, labelsize=8)
    ax.grid(True, color=BORDER, linewidth=0.6, alpha=0.7)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))


def draw_timeseries(canvas: Canvas, panel: dict) -> None:
    _, inner = panel_frame(canvas, panel)
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit")
    lines = [s for t in panel["targets"] for s in series_of(t)]
    longest = max((len(name) for name, _, _ in lines), default=0)
    ncol = max(1, min(len(lines), 5 if longest < 16 else 4 if longest < 24 else 3))
    legend_rows = min(4, -(-len(lines) // ncol))
    legend_h = legend_rows * 14 / canvas.height
    ax = canvas.fig.add_axes([inner[0] + 0.035, inner[1] + legend_h + 0.012, inner[2] - 0.04,
                              inner[3] - legend_h - 0.015])
    style_axes(ax, unit)
    stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
    base = None
    for i, (name, times, values) in enumerate(lines):
        color = PALETTE[i % len(PALETTE)]
        if stacked and base is not None and len(base) == len(values):
            top = [b + v for b, v in zip(base, values)]
            ax.fill_between(times, base, top, color=color, alpha=0.35, linewidth=0)
            ax.plot(times, top, color=color, linewidth=1.2, label=name)
            base = top
        else:
            ax.plot(times, values, color=color, linewidth=1.4, label=name)
            ax.fill_between(times, values, color=color, alpha=0.08, linewidth=0)
            base = values if stacked else None
    if defaults.get("min") is not None:
        ax.set_ylim(bottom=defaults["min"])
    if lines:
        ax.legend(loc="upper left", bbox_to_anchor=(-0.03, -0.08), ncol=ncol, frameon=False, fontsize=7,
                  labelcolor=TEXT, handlelength=1.2, columnspacing=1.0, labelspacing=0.25)


def draw_stat(canvas: Canvas, panel: dict) -> None:
    frame, inner = panel_frame(canvas, panel)
    defaults = panel["fieldConfig"]["defaults"]
    series = [s for t in panel["targets"] for s in series_of(t)]
    if not series:
        frame.text(0.5, 0.4, "No data", color=MUTED, ha="center", va="center", fontsize=14)
        return
    name, times, values = series[0]
    value = last(values)
    color = threshold_color(value, defaults)
    if panel.get("options", {}).get("textMode") == "name":
        text = name
    else:
        text = mapped(value, defaults) or fmt(value, defaults.get("unit"), defaults.get("decimals"))
    if len(times) > 1:
        ax = canvas.fig.add_axes([inner[0], inner[1], inner[2], inner[3] * 0.45])
        ax.axis("off")
        ax.fill_between(times, values, color=color, alpha=0.18, linewidth=0)
        ax.plot(times, values, color=color, linewidth=1)
        lo, hi = min(values), max(values)
        ax.set_ylim(lo - (hi - lo or 1) * 0.1, hi + (hi - lo or 1) * 0.6)
    frame.text(0.5, 0.45, text, color=color, ha="center", va="center", fontsize=26 if len(text) < 10 else 16,
               fontweight="bold")


def draw_bargauge(canvas: Canvas, panel: dict) -> None:
    frame, inner = panel_frame(canvas, panel)
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit")
    bars = [(name, last(values)) for t in panel["targets"] for name, _, values in series_of(t)]
    bars = [(n, v) for n, v in bars if v is not None]
    bars.sort(key=lambda b: b[1], reverse=True)
    top = max([v for _, v in bars] + [defaults.get("max") or 0]) or 1
    n = max(len(bars), 1)
    height_frac = inner[3] / n
    for i, (name, value) in enumerate(bars):
        y = inner[1] + inner[3] - (i + 1) * height_frac
        ax = canvas.fig.add_axes([inner[0], y + height_frac * 0.12, inner[2], height_frac * 0.76])
        ax.axis("off")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        color = threshold_color(value, defaults, COLORS["blue"])
        ax.add_patch(Rectangle((0.0, 0.05), 1.0, 0.45, facecolor=BORDER, linewidth=0))
        ax.add_patch(Rectangle((0.0, 0.05), max(value / top, 0.002), 0.45, facecolor=color, linewidth=0, alpha=0.9))
        ax.text(0.0, 0.62, name, color=TEXT, fontsize=7.5, va="bottom", ha="left")
        ax.text(1.0, 0.62, fmt(value, unit), color=color, fontsize=8, va="bottom", ha="right", fontweight="bold")


def draw_table(canvas: Canvas, panel: dict) -> None:
    frame, inner = panel_frame(canvas, panel)
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"].get("overrides", [])}
    organize = next((t["options"] for t in panel.get("transformations") or [] if t["id"] == "organize"), {})
    rename = organize.get("renameByName", {})
    order = organize.get("indexByName", {})
    rows: dict[tuple, dict] = {}
    headers = []
    for target in panel["targets"]:
        header = rename.get(f"Value #{target['refId']}", target["refId"])
        headers.append(header)
        for r in target["result"]:
            labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
            key = tuple(sorted(labels.items()))
            row = rows.setdefault(key, dict(labels))
            row[header] = float(r["value"][1]) if "value" in r else last([float(v) for _, v in r["values"]])
    label_cols = sorted({k for row in rows.values() for k in row if k not in headers},
                        key=lambda c: (order.get(c, 99), c))
    columns = label_cols + headers
    sort_by = (panel.get("options", {}).get("sortBy") or [{}])[0]
    key_col = sort_by.get("displayName", headers[0])
    ordered = sorted(rows.values(), key=lambda r: r.get(key_col, float("-inf")), reverse=sort_by.get("desc", True))
    line_px = 19
    fit = max(1, int(inner[3] * canvas.height / line_px) - 1)
    shown = ordered[:fit]
    cells = [[fmt(row.get(c), overrides.get(c, {}).get("unit")) if c in headers else str(row.get(c, ""))
              for c in columns] for row in shown]
    ax = canvas.fig.add_axes(inner)
    ax.axis("off")
    if not cells:
        ax.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center")
        return
    widths = [max(len(c), *(len(r[i]) for r in cells)) + 2 for i, c in enumerate(columns)]
    total = sum(widths)
    table = ax.table(cellText=cells, colLabels=columns, colWidths=[w / total for w in widths],
                     loc="upper left", cellLoc="left", colLoc="left",
                     bbox=[0, 1 - (len(cells) + 1) * line_px / (inner[3] * canvas.height), 1,
                           (len(cells) + 1) * line_px / (inner[3] * canvas.height)])
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor(BORDER)
        cell.set_linewidth(0.5)
        cell.set_facecolor(PANEL if r % 2 else "#1f2226")
        cell.get_text().set_color(TEXT if r else "#6e9fff")
        if r == 0:
            cell.get_text().set_fontweight("bold")
    if len(ordered) > len(shown):
        frame.text(0.99, 0.015, f"{len(ordered) - len(shown)} more rows", color=MUTED, fontsize=7, ha="right")


def draw_row(canvas: Canvas, row: dict) -> None:
    left, bottom, width, height = canvas.rect(row["gridPos"], pad=1)
    canvas.fig.text(left + 0.002, bottom + height / 2, f"▾ {row['title']}", color=TEXT, fontsize=12,
                    fontweight="bold", va="center")


def render(data: dict, out: Path) -> None:
    canvas = Canvas(data)
    fig = canvas.fig
    start = datetime.fromtimestamp(data["start"], tz=timezone.utc)
    end = datetime.fromtimestamp(data["end"], tz=timezone.utc)
    fig.text(8 / canvas.width, 1 - 24 / canvas.height, data["title"], color=TEXT, fontsize=16, fontweight="bold",
             va="center")
    variables = "   ".join(f"{k}: {'All' if v == '.*' else v}" for k, v in data["variables"].items())
    fig.text(8 / canvas.width, 1 - 52 / canvas.height,
             f"datasource: Prometheus (test fixture)   {variables}   "
             f"{start:%H:%M}–{end:%H:%M} UTC", color=MUTED, fontsize=9.5, va="center")
    for row in data.get("rows", []):
        draw_row(canvas, row)
    drawers = {"timeseries": draw_timeseries, "stat": draw_stat, "bargauge": draw_bargauge, "table": draw_table}
    for panel in data["panels"]:
        drawers[panel["type"]](canvas, panel)
    fig.text(0.5, 12 / canvas.height,
             "A rendering of the dashboard panels' data, queried from a real Prometheus scraping hami-webui-server "
             "on the test fixture (tests/monitoring_mixin.rs), drawn with matplotlib by mixin/render/render.py — "
             "not a Grafana screenshot.", color=MUTED, fontsize=8.5, ha="center", va="center")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=BG, dpi=100)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def collect(directory: Path, seconds: int) -> None:
    env = dict(os.environ, HAMI_MIXIN_RENDER_DIR=str(directory), HAMI_MIXIN_RENDER_SECONDS=str(seconds))
    subprocess.run(["cargo", "test", "--locked", "--test", "monitoring_mixin",
                    "every_dashboard_query_returns_data_from_a_real_prometheus", "--", "--exact", "--nocapture"],
                   cwd=ROOT, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="directory with data written earlier (skips the test run)")
    parser.add_argument("--seconds", type=int, default=600, help="how long the fixture runs before the data is read")
    parser.add_argument("--dashboard", default="hami-cluster-overview", help="dashboard uid")
    parser.add_argument("--out", type=Path, help="PNG path (default docs/dashboard-<uid without hami->.png)")
    args = parser.parse_args()
    out = args.out or ROOT / "docs" / f"dashboard-{args.dashboard.removeprefix('hami-')}.png"
    if args.data:
        data_dir = args.data
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="hami-mixin-render-"))
        collect(data_dir, args.seconds)
    render(json.loads((data_dir / f"{args.dashboard}.json").read_text()), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
