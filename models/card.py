"""The model card: a Markdown summary of an artifact with its PNG plots.

Called by the trainer after the artifact is written. Plots: training and validation loss,
prediction against actual on a held-out engine, and the distribution of held-out errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import Series
from models.evaluation import Row, format_table
from models.sources import SOURCES

LOSS_PNG = "loss.png"
PREDICTION_PNG = "prediction.png"
ERRORS_PNG = "errors.png"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(path: Path, history: dict[str, list[float]]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=90)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], label="train")
    ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled units)")
    ax.set_title("Training and validation loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_prediction(path: Path, series: Series, pred: np.ndarray) -> None:
    """One channel: the whole run and a zoom. Several: the whole run of each channel (at most
    :data:`MAX_PANELS`), two columns."""
    if len(series.channels) > 1:
        _plot_channels(path, series, pred)
        return
    plt = _pyplot()
    channel = 0
    actual = series.values[1:, channel]
    predicted = pred[:-1, channel]
    t = np.arange(1, len(series))
    zoom = slice(max(0, len(t) // 2 - 100), len(t) // 2 + 100)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5.5), dpi=90)
    for ax, sl, title in ((axes[0], slice(None), "whole run"), (axes[1], zoom, "zoom")):
        ax.plot(t[sl], actual[sl], lw=0.8, label="actual")
        ax.plot(t[sl], predicted[sl], lw=0.8, label="predicted (one step ahead)")
        ax.set_title(f"{series.engine_id} ({series.channels[channel]}), {title}")
        ax.set_xlabel("reading")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


#: Most channels drawn in the prediction plot.
MAX_PANELS = 14


def _plot_channels(path: Path, series: Series, pred: np.ndarray) -> None:
    plt = _pyplot()
    n = min(len(series.channels), MAX_PANELS)
    rows = (n + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(9, 1.6 * rows + 0.6), dpi=80, squeeze=False)
    t = np.arange(1, len(series))
    start = max(1, series.score_from)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        ax.plot(t, series.values[1:, k], lw=0.6, label="actual")
        ax.plot(t, pred[:-1, k], lw=0.6, label="predicted")
        if start > 1:
            ax.axvline(start, color="grey", lw=0.6, ls="--")
        ax.set_title(series.channels[k], fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(loc="upper left", fontsize=6)
    fig.suptitle(f"{series.engine_id}: one step ahead (dashed line: start of the scored part)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_errors(
    path: Path, series: Sequence[Series], pred: Sequence[np.ndarray], scale: Sequence[float]
) -> None:
    plt = _pyplot()
    model_err, last_err = [], []
    for s, p in zip(series, pred, strict=True):
        start = max(1, s.score_from)
        model_err.append(((s.values[start:] - p[start - 1 : -1]) / scale).ravel())
        last_err.append(((s.values[start:] - s.values[start - 1 : -1]) / scale).ravel())
    m, lv = np.concatenate(model_err), np.concatenate(last_err)
    lim = float(np.quantile(np.abs(np.concatenate([m, lv])), 0.995))
    bins = np.linspace(-lim, lim, 80)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=90)
    ax.hist(lv, bins=bins, alpha=0.5, label="last value")
    ax.hist(m, bins=bins, alpha=0.6, label="model")
    ax.set_xlabel("next-value error (scaled units)")
    ax.set_ylabel("readings (log scale)")
    ax.set_yscale("log")
    ax.set_title("Held-out error distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _architecture_text(arch: dict[str, Any]) -> str:
    conv = arch.get("conv")
    front = (
        f"causal Conv1D({conv['filters']} filters, kernel {conv['kernel_size']}, "
        f"{conv['activation']}) -> "
        if conv
        else ""
    )
    head = "residual (predicts the change)" if arch["residual"] else "predicts the level"
    return (
        f"{front}{arch['layers']} x {arch['cell'].upper()}({arch['units']}), dense head, "
        f"{head}, dropout {arch['dropout']}"
    )


def _channels_table(manifest: dict[str, Any]) -> str:
    units = manifest.get("units") or [""] * len(manifest["channels"])
    lines = ["| channel | unit | scaling mean | scaling std |", "|---|---|---|---|"]
    for name, unit, mean, scale in zip(
        manifest["channels"],
        units,
        manifest["scaler"]["mean"],
        manifest["scaler"]["scale"],
        strict=True,
    ):
        lines.append(f"| {name} | {unit or '-'} | {mean:.6g} | {scale:.6g} |")
    return "\n".join(lines)


def _source_text(manifest: dict[str, Any]) -> str:
    source = SOURCES.get(manifest["data"]["format"])
    if source is None:
        return "Not recorded for this format: state the data's origin and licence here."
    return f"- Source: {source.citation}.\n- Licence: {source.licence}."


def _init_text(training: dict[str, Any]) -> str:
    init = training.get("init_from")
    if not init:
        return ""
    return (
        f"| fine-tuned from | `{init['version']}` (trained on {init['data'].get('name')}); "
        "its channels, architecture and scaling are kept |\n"
    )


def _tuning_text(manifest: dict[str, Any]) -> str:
    tuning = manifest.get("tuning")
    if not tuning:
        return ""
    lines = [
        "## Hyper-parameter search",
        "",
        f"{tuning['library']} {tuning['library_version']}, {tuning['sampler']} (seed "
        f"{tuning['seed']}), {len(tuning['trials'])} trials. Objective: {tuning['objective']}. "
        f"Trial {tuning['chosen']} was chosen and is this model; the test engines were not "
        "used for the choice.",
        "",
        "Search space: " + "; ".join(f"{k} {v}" for k, v in tuning["space"].items()) + ".",
        "",
        "| trial | cell | units | layers | conv kernel | sequence length | validation RMSE "
        "(scaled) | epochs (best) | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tuning["trials"]:
        p = t["params"]
        mark = " **(chosen)**" if t["number"] == tuning["chosen"] else ""
        if "repeat_of" in t:
            mark += f" (repeats {t['repeat_of']}, not refitted)"
        value = "failed" if t["value"] is None else f"{t['value']:.5f}"
        lines.append(
            f"| {t['number']}{mark} | {p['cell']} | {p['units']} | {p['layers']} | "
            f"{p['conv_kernel'] or 'none'} | {p['sequence_length']} | {value} | "
            f"{t.get('epochs_run', '-')} ({t.get('best_epoch', '-')}) | "
            f"{t.get('fit_seconds', '-')} |"
        )
    return "\n".join(lines) + "\n\n"


def write_card(
    out: Path,
    manifest: dict[str, Any],
    rows: Sequence[Row],
    held_out: Sequence[Series],
    predict: Callable[[Series], np.ndarray],
) -> None:
    """Write ``model_card.md`` and the three plots into the artifact directory ``out``."""
    training = manifest["training"]
    plot_loss(out / LOSS_PNG, training["history"])
    preds = [predict(s) for s in held_out]
    source = SOURCES.get(manifest["data"]["format"])
    show_series = source is None or source.redistributable
    if held_out:
        if show_series:
            plot_prediction(out / PREDICTION_PNG, held_out[0], preds[0])
        plot_errors(out / ERRORS_PNG, held_out, preds, manifest["scaler"]["scale"])
    prediction = (
        f"![prediction against actual]({PREDICTION_PNG})"
        if show_series
        else "(No plot of predicted against actual readings: the data's licence does not "
        "allow shipping a reproduction of it.)"
    )
    arch = manifest["architecture"]
    data = manifest["data"]
    split = data["split"]
    text = f"""# Model card: {manifest["version"]}

Next-reading forecaster for vibewatch. It reads one engine's readings in time order,
carries its recurrent state from reading to reading and predicts the next reading of every
channel; the service scores the difference between that prediction and what arrives.

| | |
|---|---|
| channels | {len(manifest["channels"])}: {", ".join(manifest["channels"])} |
| architecture | {_architecture_text(arch)} |
| training sequences | {manifest["sequence_length"]} readings, stride {training["stride"]}, \
every window starts from a zero state |
| data | {data["name"]} ({data["format"]}): {", ".join(data["files"])} |
| data sha256 | `{data["sha256"]}` |
| split | by {split["method"]}: train {len(split["train"])}, val {len(split["val"])}, \
test {len(split["test"])} |
| validation engines | {", ".join(split["val"])} |
| test engines | {", ".join(split["test"])} |
{_init_text(training)}| training | {training["epochs_run"]} epochs \
(best {training["best_epoch"]}), {training["fit_seconds"]} s on this machine, \
seed {training["seed"]}, learning rate {training["learning_rate"]:g} |
| created | {manifest["created"]}, code {manifest["code_version"]}, \
Keras {manifest["keras_version"]} |

## Channels and scaling

Inputs are scaled per channel, (raw - mean) / std, with the training part's statistics.

{_channels_table(manifest)}

## Training data: source and licence

{_source_text(manifest)}

## Next-value accuracy on held-out engines

Raw units. The moving-average window ({manifest["metrics"]["moving_average_window"]}) was
chosen on the validation engines. "vs last" is RMSE relative to the last-value baseline.

```
{format_table(rows)}
```

{prediction}

![error distribution]({ERRORS_PNG})

![loss]({LOSS_PNG})

{_tuning_text(manifest)}## Intended use and limits

- Trained on the data above; predictions for machines whose normal level or dynamics differ
  much from it are less reliable, and the anomaly scorer should learn its error statistics
  per engine rather than trust absolute errors.
- The model is evaluated from a zero state at the start of each held-out run, as the service
  starts an engine; sequences far longer than {manifest["sequence_length"]} readings were not
  seen in training but are covered by the held-out evaluation (whole runs).
- The artifact's probe sequence lets the service check that its NumPy kernel reproduces this
  Keras model (to {manifest["probe"]["tolerance"]:g} in scaled units) before using it.
"""
    (out / "model_card.md").write_text(text, encoding="utf-8")
