"""Benchmark: products inside the recommended labels — quality, training overhead, serving latency.

    .venv/bin/python -m bench.products [--parts quality tables serve memory] [--cj-data D] [--lpoint-data D]

quality: The Complete Journey (cap10: the same 801 households, splits and test baskets as
bench/completejourney.py), scored at product level (PD_C = product_id). The two-stage ranking uses the label
model that `wdrec train --profile completejourney-cap10` trains (default settings; reused from
results/tmp/products/ when there), its label ranking dated as the service dates a request (each history's
session dates, the target session's date as the reference date), and the product tables built by the
product's own code from the sessions before each target, ranked by the product's own code (app/products.py:
`ProductRanker.rank` lists the label ranking's first FLAT_LABELS labels' products, `flatten` merges them by
P(label) ^ LABEL_SHARPNESS x P(product | label, client), the share of the label the client's recency-decayed
purchases give it; every setting is the product's). Beside it, G-Pop, P-Pop and TIFU-KNN (the product's
own training/baselines, tuned on validation: TIFU-KNN's whole grid) run directly over all products. No
statistic sees a validation or test basket. Each method's wall time and peak RSS above the RSS at its start
are measured.

tables: the `wdrec train` steps "preprocess" (load, validate, the seed's rules) and "products" (the product
tables) on the `lpoint` preset (5.0M Product rows), timed and sampled by the pipeline's own `Steps`; then
the tables' size on disk and the RSS a process grows by when it loads them into a ProductRanker.

serve: `wdrec serve` (2 workers) over the default data set (bench/serve.py's artifacts), wrk at 32
connections, GET /recommend?k=10 against GET /recommend?k=10&products=3, rounds alternating; then the
service's memory (`service_memory`): each process's RSS, PSS and private memory, at start-up and after the
same label-only traffic, against a server of the same version with its product tables taken out.

memory: `service_memory` at the scale the target names, a version `wdrec train` builds from the `lpoint`
preset (bench/serve.py's quick settings, products included).

Writes results/products.json and results/products.md; a part not run keeps its previous figures.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from app.products import FLAT_LABELS, LABEL_SHARPNESS, PRIOR_WEIGHT, ProductRanker, flatten
from app.recommender import Recommender  # torch loaded before any method's memory is measured
from bench import RESULTS, write_results
from training.baselines import GlobalPopularity, PersonalPopularity, Pool, TifuKNN
from training.dataset import ProcessedData, Vocabulary
from training.features import ClientRecord, split_examples
from training.load import Tables
from training.metrics import KS, ndcg_at_k, paired_difference, per_user, ranking_report, top_k
from training.pipeline import Steps, client_records
from training.preprocess import get_profile, load_profile_tables, preprocess
from training.products import (
    HALF_LIFE_DAYS,
    HALF_LIFE_SESSIONS,
    build_catalogue,
    files_of,
    purchases,
    rank_tables,
    with_dates,
)

log = logging.getLogger("bench.products")
WORK = RESULTS / "tmp" / "products"
PROFILE = "completejourney-cap10"
SPLITS = ("valid", "test")
STAT_SPLITS = ("context", "train")  # the sessions best sellers may count: never a validation or test basket
Rankings = dict[str, list[list[int]]]  # split -> ranked product indices per client


# --- quality ----------------------------------------------------------------------------------------------


class ProductData:
    """The Complete Journey at product level: the label data set, each kept session's products (indices into
    `universe`, the products of the kept baskets) and the purchases of the kept sessions."""

    def __init__(self, tables: Tables, data: ProcessedData) -> None:
        self.data = data
        self.records = client_records(data)
        keys = tables.session.select("CLNT_ID", "SESS_ID", "SESS_KEY")
        kept = data.sessions.join(keys, on=["CLNT_ID", "SESS_ID"]).select("SESS_KEY", "position", "split")
        self.bought = with_dates(purchases(tables, drop_first_hit=False), tables).join(kept, on="SESS_KEY")
        self.universe = np.sort(self.bought["PD_C"].unique().to_numpy())
        self.master = tables.master
        index = pl.DataFrame({"PD_C": self.universe, "item": np.arange(len(self.universe), dtype=np.int32)})
        self.sessions = (
            self.bought.join(index, on="PD_C")
            .group_by("CLNT_ID", "position", "split")
            .agg(labels=pl.col("item").unique().sort())
            .sort("CLNT_ID", "position")
        )
        grouped = self.sessions.group_by("CLNT_ID", maintain_order=True).agg("labels")
        sessions_of = {c: [list(s) for s in lists] for c, lists in grouped.iter_rows()}
        self.product_records = [
            ClientRecord(r.clnt_id, r.gender, r.age, sessions_of[r.clnt_id]) for r in self.records
        ]

    @property
    def n_products(self) -> int:
        return len(self.universe)


def two_stage(pdata: ProductData, artifacts: Path) -> Rankings:
    """The label model's first FLAT_LABELS labels' products (`ProductRanker.rank`), flattened (`flatten`)."""
    recommender = Recommender.load(artifacts)
    vocab = pdata.data.vocab
    catalogue = build_catalogue(pdata.bought, master=pdata.master, brand=_no_brands(), vocab=vocab)
    popular = pdata.bought.filter(pl.col("split").is_in(STAT_SPLITS))
    item_of = {int(p): i for i, p in enumerate(pdata.universe)}
    rankings: Rankings = {}
    for split in SPLITS:
        examples = split_examples(pdata.records, split)
        cut = pl.DataFrame({"CLNT_ID": examples.clnt_ids, "cut": [len(h) for h in examples.histories]})
        own = pdata.bought.join(cut, on="CLNT_ID").filter(pl.col("position") < pl.col("cut"))
        tables = rank_tables(
            catalogue,
            popular=popular,
            own=own,
            client_ids=examples.clnt_ids,
            n_ages=len(vocab.ages),
            as_of=None,
        )
        ranker = ProductRanker(
            tables, n_clients=len(examples.clnt_ids), n_labels=vocab.n_labels, n_ages=len(vocab.ages)
        )
        # Dated as the service dates a request: each history's session dates and its target's date.
        scores = recommender.score_histories(
            examples.histories, examples.genders, examples.ages, examples.days, examples.target_days
        )
        values, labels = scores.topk(FLAT_LABELS, dim=1)
        rankings[split] = []
        for row, (probs, ids) in enumerate(zip(values.tolist(), labels.tolist(), strict=True)):
            labels_of_row = list(zip(ids, probs, strict=True))
            lists = ranker.rank(
                labels_of_row, n=max(KS), row=row, gender=examples.genders[row], age=examples.ages[row]
            )
            top = flatten(labels_of_row, lists, n=max(KS))
            rankings[split].append([item_of[p.pd_c] for p in top])
    return rankings


def _no_brands() -> pl.DataFrame:
    return pl.DataFrame(schema={"PD_C": pl.Int64, "brand": pl.String})


def baselines(pdata: ProductData, kinds: tuple[type[Any], ...]) -> dict[str, Rankings]:
    """The product's own baselines (training/baselines) over all products: fitted on every client's history
    before validation, tuned on the validation targets, ranking the valid and test targets."""
    records = pdata.product_records
    pool = Pool.of(records, max_neighbours=len(records), seed=0)
    valid = split_examples(records, "valid")
    fitted = [kind(pdata.n_products).fit(pool, valid) for kind in kinds]
    return {
        b.name: {split: top_k(b.score(split_examples(records, split)), max(KS)) for split in SPLITS}
        for b in fitted
    }


def metric_table(runs: dict[str, Rankings], split: str, pdata: ProductData) -> dict[str, dict[str, float]]:
    """Each method's ranking metrics on `split`, and its per-client NDCG@10 difference to the first one."""
    truths = [set(t) for t in split_examples(pdata.product_records, split).targets]
    first = per_user(ndcg_at_k, next(iter(runs.values()))[split], truths, 10)
    table = {}
    for name, run in runs.items():
        table[name] = ranking_report(run[split], truths, pdata.n_products, KS)
        diff, se = paired_difference(per_user(ndcg_at_k, run[split], truths, 10), first)
        table[name].update({"ndcg@10_minus_first": diff, "ndcg@10_minus_first_se": se})
    return table


def measured(run: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """run()'s answer, wall seconds and peak RSS above the RSS at its start (MB, sampled every 50 ms).

    In this process: a forked child deadlocks on the thread pools polars and torch hold. Large numpy
    arrays are mmap-ed and handed back to the system when freed, so each method starts near the same RSS.
    Every library, torch included, is imported before the first method runs: none pays for an import.
    """
    gc.collect()
    log.info("measuring %s", getattr(run, "func", run).__name__)
    steps = Steps()
    with open("/proc/self/statm") as fh:
        start_mb = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    with steps.step("run"):
        answer = run()
    figures = steps.timings["run"]
    return answer, {"seconds": figures["seconds"], "peak_mb": round(figures["peak_rss_mb"] - start_mb, 1)}


def ensure_label_model(data_dir: Path, root: Path) -> Path:
    """`wdrec train --profile completejourney-cap10` with its default settings, unless trained already."""
    artifacts = root / "cj-artifacts"
    if not (artifacts / "current").exists():
        wdrec = Path(sys.executable).with_name("wdrec")
        command = [str(wdrec), "train", "--data", str(data_dir), "--artifacts", str(artifacts)]
        subprocess.run([*command, "--profile", PROFILE], check=True)
    return artifacts


def run_quality(data_dir: Path) -> dict[str, Any]:
    from training.completejourney import import_completejourney

    if not (data_dir / "Product.csv").exists():
        import_completejourney(data_dir)
    artifacts = ensure_label_model(data_dir, WORK)
    tables = load_profile_tables(data_dir, profile=PROFILE)
    pdata = ProductData(tables, preprocess(tables, get_profile(PROFILE)))
    del tables
    runs: dict[str, Rankings] = {}
    cost: dict[str, dict[str, float]] = {}
    name = "two-stage (W&D labels -> products)"
    runs[name], cost[name] = measured(functools.partial(two_stage, pdata, artifacts))
    popular, cost["G-Pop + P-Pop"] = measured(
        functools.partial(baselines, pdata, (GlobalPopularity, PersonalPopularity))
    )
    runs.update(popular)
    tifu, cost["TIFU-KNN"] = measured(functools.partial(baselines, pdata, (TifuKNN,)))
    runs.update(tifu)
    tables_by_split = {split: metric_table(runs, split, pdata) for split in SPLITS}
    n_clients = len(pdata.records)
    metadata = json.loads((artifacts / "current" / "metadata.json").read_text())
    return {
        "label_model": {
            "version": metadata["version"],
            "config": metadata["config"],
            "label_test_ndcg@10": metadata["metrics"]["test"][metadata["card"]["model"]]["ndcg@10"],
        },
        "households": n_clients,
        "products": pdata.n_products,
        "labels": pdata.data.vocab.n_labels,
        "dense_matrix_mb": round(n_clients * pdata.n_products * 8 / 2**20, 1),
        "two_stage": {
            "flat_labels": FLAT_LABELS,
            "prior_weight": PRIOR_WEIGHT,
            "label_sharpness": LABEL_SHARPNESS,
            "half_life_days": HALF_LIFE_DAYS,
            "half_life_sessions": HALF_LIFE_SESSIONS,
        },
        "metrics": tables_by_split,
        "cost": cost,
        "two_stage_held_mb": _held_mb(artifacts),
    }


def _held_mb(artifacts: Path) -> float:
    """What the two-stage answer keeps in memory, MB: the RSS a fresh process with the service's libraries
    imported grows by when it loads the label model's artifact set (model, Doc2Vec, client table, product
    tables), as a serving worker holds it."""
    return _fresh_rss_growth_mb(
        "import app.main\nfrom app.recommender import Recommender\n",
        "recommender = Recommender.load(Path(sys.argv[1]))  # kept: measured while held\n",
        [str(artifacts)],
    )


def _fresh_rss_growth_mb(prelude: str, load: str, args: list[str]) -> float:
    """The RSS (MB) a fresh interpreter grows by while it runs `load` (argv: `args`), after `prelude`."""
    script = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        f"{prelude}"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
        "before = rss()\n"
        f"{load}"
        "print(rss() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


# --- tables -----------------------------------------------------------------------------------------------


def _ensure_lpoint_data(data_dir: Path) -> None:
    """The `lpoint` preset generated into `data_dir`, unless it is there already."""
    from training.generate import generate

    if not (data_dir / "Product.csv").exists():
        generate(data_dir, preset="lpoint")


def run_tables(data_dir: Path) -> dict[str, Any]:
    from training.products import build_product_tables

    _ensure_lpoint_data(data_dir)
    steps = Steps()
    with steps.step("preprocess"):
        tables = load_profile_tables(data_dir, profile="lpoint")
        data = preprocess(tables, get_profile("lpoint"))
        records = client_records(data)
    with steps.step("products"):
        products = build_product_tables(
            tables, data.vocab, client_ids=[r.clnt_id for r in records], drop_first_hit=True
        )
    product_rows = tables.product.height
    del tables
    with tempfile.TemporaryDirectory() as tmp:
        products.save(Path(tmp))
        disk = {p.name: p.stat().st_size for p in Path(tmp).iterdir()}
        loaded_mb = _load_growth(Path(tmp), products.summary(), len(records), data.vocab)
    return {
        "product_rows": product_rows,
        "clients": len(records),
        "labels": data.vocab.n_labels,
        "steps": steps.timings,
        "rows": products.summary()["rows"],
        "disk_bytes": disk,
        "service_growth_mb": loaded_mb,
    }


def _load_growth(folder: Path, summary: dict[str, Any], n_clients: int, vocab: Vocabulary) -> float:
    """RSS growth of a fresh process (polars already in use) loading the tables into a ProductRanker, MB."""
    prelude = (
        "import polars as pl\n"
        "from app.products import ProductRanker\n"
        "from training.products import ProductTables\n"
        # the service has polars and pyarrow running (clients.parquet) before it loads these: so does this
        "import pyarrow.ipc\n"
        "pl.DataFrame({'x': [2, 1]}).sort('x').to_arrow()\n"
    )
    load = (
        "tables = ProductTables.load(Path(sys.argv[1]), json.loads(sys.argv[2]))\n"
        "ranker = ProductRanker(tables, n_clients=int(sys.argv[3]), n_labels=int(sys.argv[4]), n_ages=9)\n"
    )
    return _fresh_rss_growth_mb(
        prelude, load, [str(folder), json.dumps(summary), str(n_clients), str(vocab.n_labels)]
    )


# --- serve ------------------------------------------------------------------------------------------------


def run_serve(*, seconds: float, rounds: int, connections: int, workers: int) -> dict[str, Any]:
    import httpx

    from bench.serve import DEFAULT_ROOT, best_rounds, build_requests, ensure_artifacts
    from tests.e2e.conftest import running_server

    loader = "wrk" if shutil.which("wrk") else "httpx"
    artifacts = ensure_artifacts(DEFAULT_ROOT)
    load = {"workers": workers, "seconds": seconds, "connections": connections}
    with running_server(artifacts, RESULTS / "tmp" / "products-serve.log", workers=workers) as server:
        plain = build_requests(server.url)["/recommend"]
        requests = {
            "/recommend": plain,
            "/recommend products=3": [(m, f"{path}&products=3", body) for m, path, body in plain],
        }
        best = best_rounds(loader, server, requests, rounds=rounds, **load)
        version = httpx.get(f"{server.url}/model").json()["version"]
    routes = {route: vars(result) for route, result in best.items()}
    in_process = _in_process_cost(artifacts, [int(path.split("/")[2].split("?")[0]) for _, path, _ in plain])
    plain_p99, products_p99 = routes["/recommend"]["p99_ms"], routes["/recommend products=3"]["p99_ms"]
    return {
        "loader": loader,
        "workers": workers,
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "model_version": version,
        "routes": routes,
        "p99_ratio": round(products_p99 / plain_p99, 3),
        "in_process_us": in_process,
        "memory": service_memory((artifacts / "current").resolve(), workers=workers, connections=connections),
    }


# --- the service's memory ---------------------------------------------------------------------------------


def run_memory(data_dir: Path, *, workers: int, connections: int) -> dict[str, Any]:
    """`service_memory` at the `lpoint` preset's scale: a version `wdrec train` builds from `data_dir` with
    bench/serve.py's quick settings (products included; reused from WORK when there)."""
    from bench.serve import QUICK_TRAINING
    from training.pipeline import run_training

    artifacts = WORK / "lpoint-artifacts"
    if not (artifacts / "current").exists():
        _ensure_lpoint_data(data_dir)
        run_training(data_dir, artifacts, overrides=QUICK_TRAINING)
    return service_memory((artifacts / "current").resolve(), workers=workers, connections=connections)


def service_memory(version: Path, *, workers: int, connections: int) -> dict[str, Any]:
    """Each process's RSS, PSS and private (anonymous) memory, MB, of `wdrec serve --workers N` over artifact
    version `version`, against the same version with its product tables taken out: at start-up, and after
    the same label-only GET /recommend traffic (5 s of wrk; products=N requests would fill the response
    cache with longer bodies, which its size bounds, not the tables)."""
    from bench.serve import best_rounds, build_requests
    from tests.e2e.conftest import running_server

    bare = _without_products(version, WORK / f"{version.parent.parent.name}-without-products")
    stages: dict[str, dict[str, Any]] = {}
    for name, folder in (("with_tables", version), ("without_tables", bare)):
        log = RESULTS / "tmp" / f"products-memory-{name}.log"
        with running_server(folder, log, workers=workers) as server:
            pid = server.process.pid
            stages.setdefault("start", {})[name] = _process_memory_mb(pid)
            traffic = {"/recommend": build_requests(server.url)["/recommend"]}
            load = {"seconds": 5.0, "connections": connections, "workers": workers}
            best_rounds("wrk", server, traffic, rounds=1, **load)
            stages.setdefault("after_traffic", {})[name] = _process_memory_mb(pid)
    metadata = json.loads((version / "metadata.json").read_text())
    tables_mb = sum((version / name).stat().st_size for name in files_of(metadata["products"])) / 2**20
    return {
        "version": version.name,
        "clients": metadata["n_clients"],
        "tables_on_disk_mb": round(tables_mb, 2),
        "workers": workers,
        "stages": {stage: _growth(figures, tables_mb) for stage, figures in stages.items()},
    }


def _growth(figures: dict[str, dict[str, dict[str, float]]], tables_mb: float) -> dict[str, Any]:
    """One stage's figures with the growth the tables cause: per worker (mean), of the supervisor, and of
    the whole process tree's PSS (shared pages counted once), each against the tables' size on disk."""
    with_tables, without = figures["with_tables"], figures["without_tables"]

    def delta(role: str) -> dict[str, float]:
        return {key: round(with_tables[role][key] - without[role][key], 1) for key in with_tables[role]}

    worker, supervisor = delta("worker"), delta("supervisor")
    tree_pss = round(with_tables["tree"]["pss"] - without["tree"]["pss"], 1)
    return {
        **figures,
        "growth_per_worker_mb": worker,
        "growth_supervisor_mb": supervisor,
        "growth_tree_pss_mb": tree_pss,
        "worker_rss_growth_vs_disk": round(worker["rss"] / tables_mb, 2),
        "tree_pss_growth_vs_disk": round(tree_pss / tables_mb, 2),
    }


def _process_memory_mb(pid: int) -> dict[str, dict[str, float]]:
    """RSS, PSS and anonymous memory (MB) of supervisor `pid`, the mean of its workers, and the tree's sum."""
    supervisor = _smaps_mb(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = [_smaps_mb(int(child)) for child in children]
    workers = [w for w in workers if w["rss"] > supervisor["rss"] / 4]  # not uvicorn's small helper process
    mean = {key: round(sum(w[key] for w in workers) / len(workers), 1) for key in supervisor}
    tree = {key: round(supervisor[key] + sum(w[key] for w in workers), 1) for key in supervisor}
    return {"supervisor": supervisor, "worker": mean, "tree": tree}


def _smaps_mb(pid: int) -> dict[str, float]:
    fields = {"rss": 0.0, "pss": 0.0, "anonymous": 0.0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, kb = line.partition(":")
        if name.lower() in fields:
            fields[name.lower()] = round(int(kb.split()[0]) / 1024, 1)
    return fields


def _without_products(version: Path, folder: Path) -> Path:
    """A copy of artifact version `version` in `folder` with its product tables taken out (a version
    written before them: serving then loads no tables)."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(version, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    for name in files_of(metadata.pop("products")):
        del metadata["files"][name]
        (folder / name).unlink()
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def _in_process_cost(artifacts: Path, client_ids: list[int]) -> dict[str, float]:
    """Mean microseconds per client, in this process, of an uncached label ranking (features, forward pass,
    top 10) and of adding 3 products to each of its labels: the work products=3 adds to a request."""
    recommender = Recommender.load(artifacts)
    ids = list(dict.fromkeys(client_ids))
    started = time.perf_counter()
    rankings = [recommender.ranked(recommender.top([recommender.client_query(c)])[0], 10) for c in ids]
    labels_us = (time.perf_counter() - started) / len(ids) * 1e6
    started = time.perf_counter()
    for client_id, items in zip(ids, rankings, strict=True):
        recommender.label_products(items, n=3, client_id=client_id)
    products_us = (time.perf_counter() - started) / len(ids) * 1e6
    return {"clients": len(ids), "labels_us": round(labels_us, 1), "products_us": round(products_us, 1)}


# --- report -----------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Products inside the recommended labels (`bench/products.py`)", ""]
    lines += [f"Machine: {result['machine']}.", ""]
    if "quality" in result:
        lines += _quality_md(result["quality"])
    if "tables" in result:
        lines += _tables_md(result["tables"])
    if "serve" in result:
        lines += _serve_md(result["serve"])
    if "memory" in result:
        lines += _memory_md(result["memory"], title="The service's memory at the `lpoint` preset's scale")
    return "\n".join(lines) + "\n"


def _quality_md(q: dict[str, Any]) -> list[str]:
    t = q["two_stage"]
    lines = [
        "## Quality at product level: The Complete Journey, cap10",
        "",
        f"{q['households']} households, {q['products']:,} products in their kept baskets, "
        f"{q['labels']} labels. Label model: `wdrec train --profile {PROFILE}` with its default settings "
        f"(version {q['label_model']['version']}, label-level test NDCG@10 "
        f"{q['label_model']['label_test_ndcg@10']:.4f}). Two-stage: the first {t['flat_labels']} labels' "
        f"products ranked by P(label) ^ {t['label_sharpness']:g} x P(product | label, client), the "
        f"client's purchases decayed with a half-life of {t['half_life_days']:g} days (prior weight "
        f"{t['prior_weight']:g}). Time and peak RSS above the start of each method (G-Pop and P-Pop "
        "measured together); the "
        f"dense client x product float64 matrix is {q['dense_matrix_mb']} MB.",
        "",
        "| method | test NDCG@10 | test Recall@10 | valid NDCG@10 | NDCG@10 − two-stage (test, ± SE) |",
        "|---|---:|---:|---:|---:|",
    ]
    test, valid = q["metrics"]["test"], q["metrics"]["valid"]
    for name, m in test.items():
        diff = (
            f"{m['ndcg@10_minus_first']:+.4f} ± {m['ndcg@10_minus_first_se']:.4f}"
            if m["ndcg@10_minus_first"]
            else ""
        )
        lines.append(
            f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {valid[name]['ndcg@10']:.4f} | {diff} |"
        )
    lines += ["", "| method | seconds | peak RSS above start (MB) |", "|---|---:|---:|"]
    lines += [f"| {name} | {c['seconds']:.1f} | {c['peak_mb']:.0f} |" for name, c in q["cost"].items()]
    first = next(iter(test))
    best = max((n for n in test if n != first), key=lambda n: test[n]["ndcg@10"])
    ratio = test[first]["ndcg@10"] / test[best]["ndcg@10"]
    lines += ["", f"Two-stage / best baseline ({best}) test NDCG@10: **{ratio:.3f}x** (goal 1.05x).", ""]
    if "two_stage_held_mb" in q:
        lines += [
            "What the two-stage answer keeps in memory to serve (the label model's artifact set loaded as a "
            "worker loads it: model, Doc2Vec, client table, product tables): "
            f"{q['two_stage_held_mb']:.0f} MB, "
            f"against {q['dense_matrix_mb']} MB for the dense client x product matrix; its peak above is "
            "higher because it builds the product tables of each split in the same process.",
            "",
        ]
    return lines


def _tables_md(t: dict[str, Any]) -> list[str]:
    pre, prod = t["steps"]["preprocess"], t["steps"]["products"]
    disk_mb, growth = sum(t["disk_bytes"].values()) / 2**20, t["service_growth_mb"]
    return [
        "## Training overhead: `lpoint` preset",
        "",
        f"{t['product_rows']:,} Product rows, {t['clients']:,} clients kept, {t['labels']} labels; tables: "
        + ", ".join(f"{name} {rows:,} rows" for name, rows in t["rows"].items())
        + ".",
        "",
        "| step | seconds | peak RSS MB |",
        "|---|---:|---:|",
        f"| preprocess (load, validate, rules) | {pre['seconds']:.1f} | {pre['peak_rss_mb']:.0f} |",
        f"| products (the product tables) | {prod['seconds']:.1f} | {prod['peak_rss_mb']:.0f} |",
        "",
        f"The product step takes {prod['seconds'] / pre['seconds']:.2f}x the preprocess step's time; its "
        f"peak RSS is {prod['peak_rss_mb'] - pre['peak_rss_mb']:+.0f} MB against the preprocess step's peak. "
        f"Tables on disk: {disk_mb:.1f} MB; a process loading them into a ProductRanker grows by "
        f"{growth:.1f} MB ({growth / disk_mb:.2f}x the size on disk; target < 2x).",
        "",
    ]


def _serve_md(s: dict[str, Any]) -> list[str]:
    lines = [
        "## Serving: GET /recommend with and without products",
        "",
        f"`wdrec serve --workers {s['workers']}` over model {s['model_version']} (default data), "
        f"{s['loader']} at {s['connections']} connections, best of {s['rounds']} alternating rounds of "
        f"{s['seconds']} s after warm-up (known clients' bodies cached per query, as in production).",
        "",
        "| route | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {route} | {r['throughput_rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        for route, r in s["routes"].items()
    ]
    cost = s["in_process_us"]
    lines += [
        "",
        f"p99 with products=3 / label-only: **{s['p99_ratio']:.2f}x** (target <= 1.10x).",
        "",
        f"In one process, over {cost['clients']} clients: an uncached label ranking takes "
        f"{cost['labels_us']:.0f} us per client, adding 3 products to each of its 10 labels "
        f"{cost['products_us']:.0f} us "
        f"({cost['products_us'] / cost['labels_us']:.1%} of it); a known client's answer is then cached per "
        "query like the label-only one.",
        "",
    ]
    if "memory" in s:
        lines += _memory_md(s["memory"], title="The service's memory over the default data")
    return lines


def _memory_md(m: dict[str, Any], *, title: str) -> list[str]:
    lines = [
        f"## {title}",
        "",
        f"`wdrec serve --workers {m['workers']}` over version {m['version']} ({m['clients']:,} clients; "
        f"product tables {m['tables_on_disk_mb']:.2f} MB on disk, memory-mapped) against the same version "
        "with its product tables taken out. MB per process: the workers' mean and the supervisor (which "
        "checks the version in a child process and holds no model); PSS counts a page shared by n processes "
        "as 1/n in each.",
        "",
        "| when | process | RSS with / without tables | growth | PSS growth | private (anonymous) growth |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for stage, g in m["stages"].items():
        roles = (("worker", g["growth_per_worker_mb"]), ("supervisor", g["growth_supervisor_mb"]))
        for role, growth in roles:
            w, bare = g["with_tables"][role], g["without_tables"][role]
            lines.append(
                f"| {stage.replace('_', ' ')} | {role} | {w['rss']:.0f} / {bare['rss']:.0f} | "
                f"{growth['rss']:+.1f} | {growth['pss']:+.1f} | {growth['anonymous']:+.1f} |"
            )
    after = m["stages"]["after_traffic"]
    lines += [
        "",
        f"After traffic, each worker's RSS grows by **{after['worker_rss_growth_vs_disk']:.2f}x** the "
        f"tables' size on disk, the whole service's PSS by {after['tree_pss_growth_vs_disk']:.2f}x "
        "(target: less than 2x).",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["quality", "tables", "serve", "memory"],
        default=["quality", "tables", "serve", "memory"],
    )
    parser.add_argument("--cj-data", type=Path, default=RESULTS / "tmp" / "completejourney")
    parser.add_argument("--lpoint-data", type=Path, default=RESULTS / "tmp" / "lpoint")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="serve: measured seconds per route and round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="serve: rounds; each route keeps its best")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    WORK.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "products.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    result["machine"] = (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, shared with other work "
        f"(1-minute load average {os.getloadavg()[0]:.1f} at the start of the last run)"
    )
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "quality": functools.partial(run_quality, args.cj_data),
        "tables": functools.partial(run_tables, args.lpoint_data),
        "serve": functools.partial(
            run_serve,
            seconds=args.seconds,
            rounds=args.rounds,
            connections=args.connections,
            workers=args.workers,
        ),
        "memory": functools.partial(
            run_memory, args.lpoint_data, workers=args.workers, connections=args.connections
        ),
    }
    for part in args.parts:
        result[part] = parts[part]()
        write_results("products", result, markdown(result))  # each part's figures kept as soon as measured


if __name__ == "__main__":
    main()
