"""The committed record of the selection procedure (``selection.json``, written by
``vibewatch evaluate select --record``): the scoring defaults it chose and the model it
chose for each data set. The service's ``ScoringSettings`` defaults must equal the recorded
choice (a test checks); the evaluate commands take their default models from it."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from service.evaluation.runs import PredictorSpec

RECORD = Path(__file__).with_name("selection.json")


def read_record(path: Path = RECORD) -> dict[str, Any]:
    """The recorded report ({} when there is none)."""
    if not path.is_file():
        return {}
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def recorded_model(kind: str, fallback: PredictorSpec, path: Path = RECORD) -> PredictorSpec:
    """The model the procedure chose for data set ``kind`` (``nab``, ``ims``, ``cmapss``),
    or ``fallback`` when nothing is recorded."""
    spec = read_record(path).get("models", {}).get(kind)
    if not spec:
        return fallback
    known = {f.name for f in fields(PredictorSpec)}
    values: dict[str, Any] = {
        k: (Path(v) if k == "model" else v) for k, v in spec.items() if k in known
    }
    # the artifact path is recorded relative to the project, so any clone finds it
    if "model" in values and not values["model"].is_absolute():
        values["model"] = Path(__file__).resolve().parents[2] / values["model"]
    return PredictorSpec(**values)
