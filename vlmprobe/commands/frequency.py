"""``vlmprobe frequency``: count class-name mentions in a training corpus (LLaVA-style conversation
JSON/JSONL), join with a run's per-class accuracy, and write frequency.csv, frequency.json
(Spearman and Pearson on log10(1 + mentions)) and frequency.png into --out."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from vlmprobe.errors import VlmprobeError


def register(subparsers) -> None:
    p = subparsers.add_parser("frequency", help="class-name frequency in a corpus vs per-class accuracy",
                              description=__doc__)
    p.add_argument("--corpus", required=True, metavar="FILE.json[l]",
                   help='list of {"conversations": [{"from", "value"}]} records (or JSONL, or {"text"} records)')
    p.add_argument("--classes", default=None, metavar="FILE|NAME,NAME,...",
                   help="class names: a JSON list, a text file (one per line) or a comma-separated list "
                        "(default: the --run's class names)")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="run directory with per-sample predictions")
    p.add_argument("--synonyms", default=None, metavar="FILE.json", help="{class name: [synonym, ...]}")
    p.add_argument("--roles", default=None, metavar="ROLE[,ROLE]",
                   help="count only turns from these speakers (e.g. gpt); default all turns")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def read_classes(spec: str) -> list[str]:
    """Class names as ``--classes`` of eval takes them (a JSON list file, a text file with one
    name per line, or ``imagenet``), or a comma-separated list."""
    from vlmprobe.data import read_classnames

    if Path(spec).is_file() or spec == "imagenet" or "," not in spec:
        return read_classnames(spec)
    return [s.strip() for s in spec.split(",") if s.strip()]


def class_accuracy(run_dir, classnames: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy [K], test count [K]) for ``classnames`` from a run, matched by class name; NaN
    where the run has no sample of that class. Runs with only "correct" fields are grouped by
    their "classname"/"label_name" field."""
    from vlmprobe.metrics.accuracy import per_class_accuracy
    from vlmprobe.metrics.rundata import load_run

    run = load_run(run_dir)
    by_name: dict[str, list[int]] = {}
    if run.labels is not None:
        acc, cnt = per_class_accuracy(run.labels, run.predictions, len(run.classnames))
        for i, name in enumerate(run.classnames):
            if cnt[i]:
                h, n = by_name.get(name, [0, 0])
                by_name[name] = [h + acc[i] * cnt[i], n + cnt[i]]
    else:
        for r in run.records:
            name = r.get("classname", r.get("label_name"))
            if name is None or "correct" not in r:
                raise VlmprobeError(f"{run.path / 'samples.jsonl'}: records need label/prediction, or "
                                    "'correct' with 'classname'")
            h, n = by_name.get(str(name), [0, 0])
            by_name[str(name)] = [h + bool(r["correct"]), n + 1]
    acc = np.array([by_name[c][0] / by_name[c][1] if c in by_name else np.nan for c in classnames])
    cnt = np.array([by_name[c][1] if c in by_name else 0 for c in classnames], dtype=np.int64)
    return acc, cnt


def run(args) -> int:
    from ..progress import bar as tqdm

    from vlmprobe.cache import atomic_write_json
    from vlmprobe.metrics import frequency as fq
    from vlmprobe.metrics.plots import frequency_scatter
    from vlmprobe.metrics.report import jsonable
    from vlmprobe.metrics.rundata import load_run

    if args.classes:
        classnames = read_classes(args.classes)
    elif args.run:
        classnames = load_run(args.run).classnames
    else:
        raise VlmprobeError("give --classes or --run (to take the run's class names)")
    synonyms = fq.load_synonyms(args.synonyms) if args.synonyms else None
    terms = fq.build_terms(classnames, synonyms)
    roles = {r.strip() for r in args.roles.split(",")} if args.roles else None
    n_texts = 0

    def texts():
        nonlocal n_texts
        for t in tqdm(fq.read_corpus_texts(args.corpus, roles), desc="counting", unit="conv", mininterval=2):
            n_texts += 1
            yield t

    t0 = time.perf_counter()
    mentions, documents = fq.count_mentions(texts(), terms, len(classnames))
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    acc = cnt = None
    if args.run:
        acc, cnt = class_accuracy(args.run, classnames)
    summary = {"corpus": str(args.corpus), "texts": n_texts, "num_classes": len(classnames),
               "roles": sorted(roles) if roles else "all", "synonyms": str(args.synonyms) if args.synonyms else None,
               "total_mentions": int(mentions.sum()), "classes_never_mentioned": int((mentions == 0).sum()),
               "run": str(args.run) if args.run else None}
    if acc is not None:
        summary.update(fq.frequency_vs_accuracy(mentions, acc))
    tmp = out / "frequency.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["class", "mentions", "documents", "log10_1p_mentions", "accuracy", "n_test"])
        for i, name in enumerate(classnames):
            a = "" if acc is None or np.isnan(acc[i]) else f"{acc[i]:.6f}"
            w.writerow([name, int(mentions[i]), int(documents[i]), f"{np.log10(1 + mentions[i]):.6f}", a,
                        "" if cnt is None else int(cnt[i])])
    tmp.replace(out / "frequency.csv")
    atomic_write_json(out / "frequency.json", jsonable(summary))
    written = [out / "frequency.csv", out / "frequency.json"]
    if acc is not None and not np.isnan(acc).all():
        written.append(frequency_scatter(mentions, acc, classnames, out / "frequency.png"))
    rho = summary.get("spearman")
    print(f"counted {n_texts} texts in {seconds:.1f}s"
          + (f"; Spearman {rho:.3f}" if isinstance(rho, float) else ""), "->", ", ".join(map(str, written)))
    return 0
