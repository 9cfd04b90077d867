"""The printed table and the JSON document of one benchmark run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import describe_line

RESULTS = Path(__file__).resolve().parent / "results"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain monospace table (right-aligned numbers)."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in cells:
        out.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                             for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}" if v < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def _numeric(s: str) -> bool:
    return bool(s) and s.replace(",", "").replace(".", "").replace("x", "").replace(
        "-", "").isdigit()


def write_json(doc: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``doc`` to ``out`` or bench/results/<UTC timestamp>.json; return the path."""
    if out is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def header(machine: dict[str, Any], command: str) -> str:
    return f"machine: {describe_line(machine)}\ncommand: {command}"
