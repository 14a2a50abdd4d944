"""``vlmprobe metrics RUN_DIR``: recompute RUN_DIR/results.json from the run's stored files
(no model), and draw reliability.png (when the run has scores) and roc.png (with --ood).
``--out DIR`` writes them into DIR instead, leaving RUN_DIR untouched (a study's ``ood`` and
``factors`` runs).

``--label-sets real|FILE.jsonl``: top-1 under single-label and multi-label truth side by side
(``vlmprobe.metrics.multilabel``).

``--open-world`` (a generation run): scores the stored answers beyond string inclusion
(synonym, hypernym / hyponym, semantic similarity with ``--text-encoder``, unmatched; see
``vlmprobe.classify.openworld``): results.json ``open_world`` and one row per answer in
open_world.jsonl."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlmprobe.errors import VlmprobeError

from .common import count, group_pair, positive_int


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def register(subparsers) -> None:
    p = subparsers.add_parser("metrics", help="recompute results.json (and plots) from a run directory",
                              description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `vlmprobe eval`")
    p.add_argument("--worst-k", type=_int_list, default=[1, 5, 10, 20], metavar="K[,K...]",
                   help="worst-k accuracy / CMM sizes (default 1,5,10,20; capped at the classes present)")
    p.add_argument("--groups", default=None, metavar="FIELD[,FIELD...]",
                   help="per-group accuracy by these sample fields (top level or meta)")
    p.add_argument("--group-drop", default=None, metavar="A,B",
                   help="also report 100*(acc_A - acc_B) for each --groups field")
    p.add_argument("--calibration-split", default=None, metavar="FRACTION|FIELD=VALUE",
                   help="fit a softmax temperature on this held-out part (a fraction of sample ids, or the "
                        "samples whose FIELD equals VALUE), report calibration before/after on the rest")
    p.add_argument("--ood", default=None, action="append", metavar="OOD_RUN_DIR",
                   help="a run of the same model on out-of-distribution images: AUROC and FPR@95TPR of every OOD "
                        "score (MSP, MCM, energy, max-logit, entropy), roc.png; repeat for several OOD sets "
                        "(results.json: ood.sets per set + ood.mean over them)")
    p.add_argument("--pseudo-labels", default=None, metavar="REF_RUN_DIR",
                   help="label-free CMM with class membership from this reference run's predictions (matched by id)")
    p.add_argument("--logit-scale", type=float, default=None,
                   help="CLIP logit scale for MCM (default: config.json, else 100 for zero-shot runs)")
    p.add_argument("--mcm-tau", type=float, default=1.0, help="MCM temperature on cosine similarities")
    p.add_argument("--ece-bins", type=positive_int, default=15)
    p.add_argument("--ece-edges", choices=["right", "left"], default="right",
                   help="bin convention: right = (l, u] (papers), left = [l, u) (torchmetrics)")
    p.add_argument("--confusion-top", type=count, default=10, help="number of confusion pairs to list")
    p.add_argument("--factors", default=None, metavar="imagenet-x|FILE.jsonl",
                   help="ImageNet-X factor accuracy and error ratio (top- and multi-factor) of a run on ImageNet "
                        "val, joined by file name (annotations from the imagenet-x package, or a file of its format)")
    p.add_argument("--factor-variant", default=None, choices=["top", "multi", "file"],
                   help="with --factors: only this annotation (imagenet-x: top and multi; a FILE: file)")
    p.add_argument("--real-labels", nargs="?", const=True, default=None, metavar="FILE",
                   help="ImageNet-ReaL accuracy (the imagenet-x package's labels, or a JSON list file)")
    p.add_argument("--clean-run", default=None, metavar="RUN_DIR",
                   help="on an ImageNet-C run: the same model's run on the clean images; its top-1 error gives "
                        "relative CE and relative mCE (Hendrycks & Dietterich)")
    p.add_argument("--open-world", action="store_true",
                   help="score a generation run's stored answers by inclusion, synonym (WordNet + names lists), "
                        "hypernym / hyponym, semantic similarity (--text-encoder) and report the unmatched rate "
                        "(results.json open_world, open_world.jsonl)")
    p.add_argument("--wordnet", default="auto", metavar="DIR|auto|none",
                   help="with --open-world: a WordNet 3.0 dict directory (auto: $VLMPROBE_WORDNET, $WNHOME/dict, "
                        "/usr/share/wordnet from the wordnet-base package, nltk_data; none: names lists only)")
    p.add_argument("--text-encoder", default=None, metavar="SPEC",
                   help="with --open-world: a CLIP model spec whose text tower gives the semantic-similarity "
                        "prediction (nearest class name to the answer), e.g. toy:clip")
    p.add_argument("--synonyms", default=None, metavar="FILE.json",
                   help="with --open-world: extra names per class, {class: [names]}")
    p.add_argument("--hypernym-depth", type=positive_int, default=3,
                   help="with --open-world: hypernym steps above the class that count (default 3)")
    p.add_argument("--label-sets", default=None, metavar="real|real:FILE|FILE.jsonl",
                   help="multi-label truth: top-1 under the single label and under each sample's label set side by "
                        "side (ImageNet-ReaL, or JSONL rows {id|image, labels}); results.json multi_label, "
                        "multi_label.jsonl")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG files")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write results.json and the PNG files into DIR (created) instead of RUN_DIR")
    p.set_defaults(func=run)


def run(args) -> int:
    from vlmprobe.cache import atomic_write_json
    from vlmprobe.metrics import calibration, ood, plots
    from vlmprobe.metrics.report import merge_results, ood_results, results_for
    from vlmprobe.metrics.rundata import load_run
    from vlmprobe.runs import RunDir

    run_data = load_run(args.run_dir)
    ood_runs = [load_run(d) for d in args.ood or []]
    ood_run = ood_runs[0] if ood_runs else None
    pseudo = load_run(args.pseudo_labels) if args.pseudo_labels else None
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None
    group_drop = group_pair(args.group_drop) if args.group_drop else None
    if group_drop and not groups:
        raise VlmprobeError("--group-drop needs --groups FIELD")
    if args.factor_variant and not args.factors:
        raise VlmprobeError("--factor-variant needs --factors imagenet-x|FILE.jsonl")
    results = results_for(run_data, worst_k=args.worst_k, groups=groups, group_drop=group_drop,
                          calibration_split=args.calibration_split, ood=ood_run, pseudo=pseudo,
                          logit_scale=args.logit_scale, mcm_tau=args.mcm_tau, confusion_top=args.confusion_top,
                          ece_bins=args.ece_bins, ece_edges=args.ece_edges, factors=args.factors,
                          real_labels=args.real_labels,
                          factor_variant=args.factor_variant, clean_error=_clean_error(args.clean_run))
    open_rows = None
    if args.open_world:
        results["open_world"], open_rows = _open_world(args, run_data)
    elif args.text_encoder or args.synonyms:
        raise VlmprobeError("--text-encoder/--synonyms belong to --open-world")
    multi_rows = None
    if args.label_sets:
        from vlmprobe.metrics.multilabel import multilabel_results
        from vlmprobe.metrics.report import jsonable

        block, multi_rows = multilabel_results(run_data, args.label_sets)
        results["multi_label"], multi_rows = jsonable(block), jsonable(multi_rows)
    if args.clean_run and not (results.get("shift") or {}).get("corruption_error"):
        raise VlmprobeError(f"--clean-run: {args.run_dir} is not an ImageNet-C run (relative mCE needs its "
                            "per-corruption errors)")
    if len(ood_runs) > 1:  # several OOD sets: each one's table and the mean over them
        from vlmprobe.metrics.report import jsonable

        sets = {str(r.path): ood_results(run_data, r, args.logit_scale, args.mcm_tau)[0] for r in ood_runs}
        results["ood"] = jsonable({"sets": sets, "mean": ood.mean_over_sets(sets)})
    dest = Path(args.out) if args.out else Path(args.run_dir)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "results.json"
    writer = RunDir(dest, {})
    writer.lock()  # the run's one writer: refused while an eval (or another metrics) writes DIR
    try:
        old = None
        if out.is_file():
            try:
                old = json.loads(out.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise VlmprobeError(f"{out}: not valid JSON (line {e.lineno}: {e.msg}); remove it or rerun the "
                                    "command that wrote it") from None
            if not isinstance(old, dict):
                raise VlmprobeError(f"{out}: expected a JSON object, got {type(old).__name__}")
        written = [out]
        if open_rows is not None:
            from vlmprobe.cache import atomic_write_text

            atomic_write_text(dest / "open_world.jsonl", "".join(json.dumps(r) + "\n" for r in open_rows))
            written.append(dest / "open_world.jsonl")
        if multi_rows is not None:
            from vlmprobe.cache import atomic_write_text

            atomic_write_text(dest / "multi_label.jsonl", "".join(json.dumps(r) + "\n" for r in multi_rows))
            written.append(dest / "multi_label.jsonl")
        atomic_write_json(out, merge_results(old, results))
    finally:
        writer.unlock()
    if not args.no_plots:
        if run_data.scores is not None and run_data.labels is not None and len(run_data.labels):
            probs = calibration.softmax(run_data.scores)
            bins = calibration.reliability_bins(probs, run_data.labels, args.ece_bins, args.ece_edges)
            written.append(plots.reliability_diagram(bins, dest / "reliability.png",
                                                     title=run_data.method or "reliability",
                                                     ece=results["calibration"]["ece"]))
        if ood_run is not None:
            _, confs = ood_results(run_data, ood_run, args.logit_scale, args.mcm_tau)
            first = results["ood"]["sets"][str(ood_run.path)] if len(ood_runs) > 1 else results["ood"]
            curves = {name: (*ood.roc_curve(a, b), first[name]["auroc"]) for name, (a, b) in confs.items()}
            written.append(plots.roc_plot(curves, dest / "roc.png"))
    if "real" in results:
        r = results["real"]
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "n/a"
        print(f"ImageNet-ReaL accuracy {acc} on {r['n']} images ({r['n_excluded_no_label']} without ReaL labels "
              f"excluded, {r['n_unmatched']} not matched)")
    for variant, v in results.get("factors", {}).get("variants", {}).items():
        worst = sorted(((f, x["error_ratio"]) for f, x in v["factors"].items() if x["error_ratio"] is not None),
                       key=lambda t: -t[1])[:3]
        print(f"ImageNet-X {variant}-factor: {v['n']} images joined; highest error ratios: "
              + ", ".join(f"{f} {e:.2f}" for f, e in worst))
    ce = (results.get("shift") or {}).get("corruption_error")
    if ce:
        from vlmprobe.metrics.corruption import describe_mce

        print(f"ImageNet-C {describe_mce(ce)}")
    if open_rows is not None:
        ow = results["open_world"]
        print(f"open world on {ow['n']} answers: " + ", ".join(
            f"{k} {100 * ow[k]['rate']:.1f}%" for k in ("inclusion", "synonym", "hypernym", "hyponym", "semantic",
                                                          "unmatched") if ow.get(k)))
        if ow["wordnet"] is None:
            print("open world: no WordNet found (synonyms from the names lists only, no hierarchy): install "
                  "wordnet-base or give --wordnet DIR", file=sys.stderr)
    if multi_rows is not None:
        m = results["multi_label"]
        line = ", ".join(f"{k.replace('_', ' ')} {100 * m[k]['top1']:.2f}% [{100 * m[k]['ci95'][0]:.1f}, "
                         f"{100 * m[k]['ci95'][1]:.1f}]" for k in ("single", "multi", "multi_any_named")
                         if m.get(k) and m[k]["top1"] is not None)
        print(f"multi-label truth ({m['source']}) on {m['n']} samples ({m['n_excluded_no_label']} with an empty set "
              f"excluded, {m['n_unmatched']} without a row): {line or 'n/a'}")
    top1 = results.get("top1", results.get("accuracy"))
    print(f"top-1 {top1:.4f}" if isinstance(top1, float) else "top-1 n/a", "->", ", ".join(str(w) for w in written))
    return 0


def _open_world(args, run_data) -> tuple[dict, list[dict]]:
    """results.json's ``open_world`` block and the per-answer rows (``classify.openworld``)."""
    from vlmprobe.classify.openworld import score_run
    from vlmprobe.metrics.report import jsonable

    encoder = None
    if args.text_encoder:
        from vlmprobe.models.registry import load_model

        encoder = load_model(args.text_encoder)
        if not hasattr(encoder, "encode_texts"):
            raise VlmprobeError(f"--text-encoder {args.text_encoder}: not a CLIP model (no text tower)")
    block, rows = score_run(run_data, args.wordnet, encoder, args.synonyms, args.hypernym_depth)
    return jsonable(block), jsonable(rows)


def _clean_error(run_dir: str | None) -> float | None:
    """Top-1 error of the --clean-run directory (None without one)."""
    if run_dir is None:
        return None
    from vlmprobe.metrics.factors import run_correct
    from vlmprobe.metrics.rundata import load_run

    correct = run_correct(load_run(run_dir))
    if not correct.size:
        raise VlmprobeError(f"--clean-run {run_dir}: no scored samples")
    return float(1 - correct.mean())
