"""Models and baselines on the validation and test targets -> metric tables, the model card, report files.

Every method is evaluated the same way, from its score matrix [E, N]: the ranking metrics of its top k,
the repeat / explore split and the "new to you" ranking (its scores with the history's labels removed),
NDCG@10 by history length, and the per-client paired difference of NDCG@10 to the best baseline.

`wdrec evaluate` (`run_evaluate`) recomputes the current version's figures from the artifacts alone:
clients.parquet holds every kept session, so the split and the baselines are rebuilt as training built them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from training.features import Examples, ModelInputs
from training.metrics import (
    KS,
    ndcg_at_k,
    ndcg_by_history_length,
    paired_difference,
    per_user,
    ranking_report,
    repeat_explore_report,
    top_k,
)

matplotlib.use("Agg")  # files only, never a display

MetricTable = dict[str, dict[str, float]]  # method -> metric -> value
MAIN_COLUMNS = ("ndcg@10", "recall@10", "hit_rate@10", "map@10", "ndcg@20", "coverage@10")
PAIRED_COLUMNS = ("ndcg@10_minus_best_baseline", "ndcg@10_minus_best_baseline_se")
SPLIT_COLUMNS = ("recall_rep@10", "recall_expl@10", "repeat_share@10", "truth_repeat_share",
                 "new_ndcg@10", "new_recall@10")  # fmt: skip
BATCH = 1024


def model_scores(
    model: torch.nn.Module, inputs: ModelInputs, exclude: torch.Tensor | None = None
) -> np.ndarray:
    """float32 [E, N] logits of an eager or TorchScript model, in batches; `exclude` [E] is each example's
    own neighbour-pool row (evaluation, like TIFU-KNN, never lets a client be its own neighbour)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, inputs.hist.shape[0], BATCH):
            batch = ModelInputs(*(t[start : start + BATCH] for t in inputs))
            own = None if exclude is None else exclude[start : start + BATCH]
            features = model.features(  # type: ignore[operator]
                batch.hist.long(), batch.ago, batch.gender, batch.age, own
            )
            out.append(model.logits(features, batch.gender, batch.age, batch.doc_vec).numpy())  # type: ignore[operator]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def bought_labels(examples: Examples) -> list[set[int]]:
    """The labels of each example's history."""
    return [{label for session in history for label in session} for history in examples.histories]


def without_bought(scores: np.ndarray, bought: Sequence[Collection[int]]) -> np.ndarray:
    """A copy of `scores` with every history label at -inf: the "new to you" ranking's scores."""
    masked = np.array(scores, dtype=np.float64)
    rows = [b for b, labels in enumerate(bought) for _ in labels]
    masked[rows, [label for labels in bought for label in labels]] = -np.inf
    return masked


def evaluate_scores(
    scores: Mapping[str, np.ndarray], examples: Examples, n_labels: int, *, baselines: Sequence[str]
) -> MetricTable:
    """Every method's metrics on `examples`, plus its per-client paired difference of NDCG@10 to the best
    of `baselines` (by NDCG@10 on these examples) and that difference's standard error."""
    truths = [set(t) for t in examples.targets]
    bought = bought_labels(examples)
    lengths = [len(h) for h in examples.histories]
    table: MetricTable = {}
    ndcg: dict[str, list[float]] = {}
    for name, matrix in scores.items():
        ranked = top_k(matrix, max(KS))
        new = top_k(without_bought(matrix, bought), 10)
        table[name] = ranking_report(ranked, truths, n_labels, KS)
        table[name].update(repeat_explore_report(ranked, new, truths, bought, 10))
        table[name].update(ndcg_by_history_length(ranked, truths, lengths, 10))
        ndcg[name] = per_user(ndcg_at_k, ranked, truths, 10)
    best = best_baseline(table, baselines)
    for name in table:
        diff, se = paired_difference(ndcg[name], ndcg[best])
        table[name].update({PAIRED_COLUMNS[0]: diff, PAIRED_COLUMNS[1]: se})
    return table


def best_baseline(table: MetricTable, baselines: Sequence[str]) -> str:
    """The baseline with the highest NDCG@10 in `table` (the first one listed on a tie)."""
    return max(baselines, key=lambda name: table[name]["ndcg@10"])


def model_card(
    metrics: Mapping[str, MetricTable], *, model: str, baselines: Sequence[str], start: Mapping[str, Any]
) -> dict[str, Any]:
    """The summary a reader checks first: per split, the best baseline and the model's paired difference
    of NDCG@10 to it (mean, standard error, z, ratio of the means); and where training started."""
    paired = {}
    for split, table in metrics.items():
        best = best_baseline(table, baselines)
        mean, se = (table[model][c] for c in PAIRED_COLUMNS)
        paired[split] = {
            "versus": best,
            "mean": mean,
            "se": se,
            "z": mean / se if se > 0 else 0.0,
            "ratio": table[model]["ndcg@10"] / max(table[best]["ndcg@10"], 1e-12),
        }
    return {"model": model, "baselines": list(baselines), "paired_ndcg@10": paired, "start": dict(start)}


def format_table(table: MetricTable, columns: Sequence[str]) -> str:
    """A Markdown table: one row per method, the given metric columns (blank where a method lacks one)."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, values in table.items():
        cells = [f"{values[c]:.4f}" if c in values else "" for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def history_columns(table: MetricTable) -> list[str]:
    return sorted({c for values in table.values() for c in values if "_hist_" in c},
                  key=lambda c: int(c.rsplit("_", 1)[1].split("-")[0].rstrip("+")))  # fmt: skip


def card_text(card: Mapping[str, Any]) -> str:
    """The model card's verdict lines."""
    lines = []
    for split, p in card["paired_ndcg@10"].items():
        lines.append(
            f"- {split}: {card['model']} minus {p['versus']} (the best baseline), NDCG@10 per client: "
            f"{p['mean']:+.4f} ± {p['se']:.4f} (z = {p['z']:.2f}, ratio {p['ratio']:.3f})"
        )
    start = card["start"]
    if start.get("baseline"):
        kept = "kept: training found nothing better on validation" if start.get("kept") else "trained on"
        lines.append(
            f"- the wide part started at {start['baseline']}'s ranking (validation NDCG@10 "
            f"{start.get('valid_ndcg@10', float('nan')):.4f}); {kept}"
        )
    explore = card.get("explore")
    if explore and explore["valid"]:
        chosen, off = explore["valid"][str(explore["weight"])], explore["valid"]["0.0"]
        lines.append(
            f'- the "new to you" term (EASE, lambda {explore["ease"]["lambda"]:g}) weighs '
            f"{explore['weight']:g} (chosen on validation): NDCG@10 {off['ndcg@10']:.4f} -> "
            f"{chosen['ndcg@10']:.4f}, "
            f'"new to you" NDCG@10 {off["new_ndcg@10"]:.4f} -> {chosen["new_ndcg@10"]:.4f}'
        )
    return "\n".join(lines)


def plot_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> None:
    """Training loss and validation NDCG@10 per epoch of every trained model, one PNG."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_ndcg) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in curves.items():
        epochs = [row["epoch"] for row in curve]
        ax_loss.plot(epochs, [row["loss"] for row in curve], label=name)
        ax_ndcg.plot(epochs, [row["valid_ndcg@10"] for row in curve], label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_ndcg.set(xlabel="epoch", ylabel="NDCG@10", title="validation NDCG@10")
    ax_ndcg.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report_text(metrics: Mapping[str, MetricTable], card: Mapping[str, Any]) -> str:
    """The Markdown tables of every split: main metrics, repeat / explore, NDCG@10 by history length."""
    parts = [card_text(card)]
    for split, table in metrics.items():
        parts += [
            f"## {split}",
            format_table(table, MAIN_COLUMNS + PAIRED_COLUMNS),
            f'### {split}: repeat / explore (Li et al., TOIS 2023) and the "new to you" ranking',
            format_table(table, SPLIT_COLUMNS),
            f"### {split}: NDCG@10 by history length (sessions before the target)",
            format_table(table, history_columns(table)),
        ]
    return "\n\n".join(parts)


def write_report(
    out_dir: Path, metrics: Mapping[str, MetricTable], *, card: Mapping[str, Any], summary: Mapping[str, Any]
) -> None:
    """metrics.json, report.md (card, tables, `summary` facts) and curves.png (from summary["curves"])."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_curves(summary.get("curves", {}), out_dir / "curves.png")
    facts = "\n".join(f"- {key}: {value}" for key, value in summary.items() if key != "curves")
    text = "# Wide & Deep training report\n\n" + facts + "\n\n" + report_text(metrics, card)
    (out_dir / "report.md").write_text(text + "\n\n![training curves](curves.png)\n")


def run_evaluate(artifacts_root: Path) -> dict[str, MetricTable]:
    """Re-run the evaluation of the current (or given) artifact version; print and return the tables."""
    from training.artifacts import load_artifacts
    from training.baselines import Pool, fit_baselines
    from training.config import TrainConfig
    from training.features import records_of, split_examples

    artifacts = load_artifacts(Path(artifacts_root))
    config = TrainConfig.model_validate(artifacts.metadata["config"])
    records = records_of(artifacts.clients)
    n = artifacts.vocab.n_labels
    pool = Pool.of(records, max_neighbours=config.start.neighbour_pool, seed=config.seed)
    examples = {split: split_examples(records, split) for split in ("valid", "test")}
    baselines = fit_baselines(pool, examples["valid"], n)
    metrics: dict[str, MetricTable] = {}
    for split, ex in examples.items():
        inputs = artifacts.builder.build_examples(ex)
        scores = {
            config.method_name: model_scores(artifacts.model, inputs, pool.neighbour_row_of(ex.clnt_ids))
        }
        scores.update({b.name: b.score(ex) for b in baselines})
        metrics[split] = evaluate_scores(scores, ex, n, baselines=[b.name for b in baselines])
    card = model_card(metrics, model=config.method_name, baselines=[b.name for b in baselines],
                      start=artifacts.metadata.get("card", {}).get("start", {}))  # fmt: skip
    text = f"artifacts {artifacts.metadata['version']}\n\n" + report_text(metrics, card) + "\n"
    sys.stdout.write(text)  # the CLI's output, not a log line
    return metrics
