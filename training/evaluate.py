"""Model vs baselines vs ablations on the validation and test targets -> metrics, table, report files.

`wdrec evaluate` (`run_evaluate`) recomputes the current version's figures from the artifacts alone:
clients.parquet holds every kept session, so the split (test = last, valid = second to last) and the
baselines' statistics (sessions before valid) are rebuilt exactly as training built them.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from training.baselines import Baseline, fit_baselines
from training.features import ClientRecord, Examples, ModelInputs, history_before_valid, split_examples
from training.metrics import KS, ndcg_at_k, paired_difference, per_user, ranking_report

matplotlib.use("Agg")  # files only, never a display

MetricTable = dict[str, dict[str, float]]  # method -> metric -> value
TABLE_COLUMNS = (
    "ndcg@10",
    "recall@10",
    "hit_rate@10",
    "precision@10",
    "map@10",
    "ndcg@20",
    "coverage@10",
    "ndcg@10_minus_first",
    "ndcg@10_minus_first_se",
)
BATCH = 1024


def top_k(scores: np.ndarray | torch.Tensor, k: int) -> list[list[int]]:
    """Ids of the k highest scores per row, best first (ties: lower id first, so runs are reproducible)."""
    values = torch.as_tensor(scores, dtype=torch.float64)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return [list(map(int, row)) for row in order.tolist()]


def model_rankings(model: torch.nn.Module, inputs: ModelInputs, k: int) -> list[list[int]]:
    """Top-k label ids of the model for every example of `inputs`, scored in batches."""
    model.eval()
    rankings: list[list[int]] = []
    with torch.inference_mode():
        for start in range(0, inputs.hist.shape[0], BATCH):
            batch = [t[start : start + BATCH] for t in inputs if t is not None]
            # An exported model of an older version takes four inputs: pass `exclude` only when there is one.
            rankings += top_k(model(batch[0].long(), *batch[1:]), k)
    return rankings


def baseline_rankings(
    baseline: Baseline, histories: Sequence[Sequence[Sequence[int]]], k: int
) -> list[list[int]]:
    return [
        r for s in range(0, len(histories), BATCH) for r in top_k(baseline.score(histories[s : s + BATCH]), k)
    ]


def evaluate_methods(
    rankers: Mapping[str, Callable[[], list[list[int]]]], examples: Examples, n_labels: int
) -> MetricTable:
    """Each method's `ranking_report` on `examples` (every target counts: nothing is excluded), plus
    "ndcg@10_minus_first" and its "_se": the per-user paired difference to the first method."""
    truths = [set(t) for t in examples.targets]
    rankings = {name: rank() for name, rank in rankers.items()}
    table = {name: ranking_report(r, truths, n_labels, KS) for name, r in rankings.items()}
    first = per_user(ndcg_at_k, next(iter(rankings.values())), truths, 10) if rankings else []
    for name, ranked in rankings.items():
        diff, se = paired_difference(per_user(ndcg_at_k, ranked, truths, 10), first)
        table[name].update({"ndcg@10_minus_first": diff, "ndcg@10_minus_first_se": se})
    return table


def baseline_rankers(
    records: Sequence[ClientRecord], examples: Examples, n_labels: int
) -> dict[str, Callable[[], list[list[int]]]]:
    """G-Pop, P-Pop, ... fitted on the sessions before valid, ranking the labels of `examples`."""
    baselines = fit_baselines([history_before_valid(r) for r in records], n_labels)
    return {b.name: functools.partial(baseline_rankings, b, examples.histories, max(KS)) for b in baselines}


def format_table(table: MetricTable, columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """A Markdown table: one row per method, the given metric columns."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [
        f"| {m} | " + " | ".join(f"{v.get(c, float('nan')):.4f}" for c in columns) + " |"
        for m, v in table.items()
    ]
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


def write_report(out_dir: Path, metrics: Mapping[str, MetricTable], *, summary: Mapping[str, Any]) -> None:
    """metrics.json, report.md (tables + `summary` facts) and curves.png (from summary["curves"])."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_curves(summary.get("curves", {}), out_dir / "curves.png")
    facts = "\n".join(f"- {key}: {value}" for key, value in summary.items() if key != "curves")
    sections = [f"## {split}\n\n{format_table(table)}" for split, table in metrics.items()]
    text = "# Wide & Deep training report\n\n" + facts + "\n\n" + "\n\n".join(sections)
    (out_dir / "report.md").write_text(text + "\n\n![training curves](curves.png)\n")


def records_from_clients(rows: Sequence[tuple[int, int, int, Sequence[Sequence[int]]]]) -> list[ClientRecord]:
    return [
        ClientRecord(int(c), int(g), int(a), [list(map(int, s)) for s in sessions])
        for c, g, a, sessions in rows
    ]


def run_evaluate(artifacts_root: Path) -> dict[str, MetricTable]:
    """Re-run the evaluation of the current (or given) artifact version; print and return the tables."""
    from training.artifacts import load_artifacts

    artifacts = load_artifacts(Path(artifacts_root))
    records = records_from_clients(artifacts.clients.select("CLNT_ID", "gender", "age", "sessions").rows())
    n = artifacts.vocab.n_labels
    metrics: dict[str, MetricTable] = {}
    for split in ("valid", "test"):
        examples = split_examples(records, split)
        inputs = artifacts.builder.build_batch(examples.histories, examples.genders, examples.ages)
        rankers = {"W&D": functools.partial(model_rankings, artifacts.model, inputs, max(KS))}
        metrics[split] = evaluate_methods({**rankers, **baseline_rankers(records, examples, n)}, examples, n)
    stored = artifacts.metadata.get("metrics", {}).get("test", {})
    text = f"artifacts {artifacts.metadata['version']}\n"
    text += "".join(f"\n{split}\n{format_table(table)}\n" for split, table in metrics.items())
    text += "\nstored at training time (test, incl. ablations)\n" + format_table(stored) + "\n"
    sys.stdout.write(text)  # the CLI's output, not a log line
    return metrics
