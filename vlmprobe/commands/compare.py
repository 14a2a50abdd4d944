"""``vlmprobe compare RUN_DIR...``: several runs side by side, from their files (no model).

``--groups group`` prints model / method / common / counter / drop (CounterAnimal's table, any
field and pair of values with ``--group-drop A,B``); ``--factors imagenet-x|FILE`` prints
per-factor accuracy (ImageNet-X) and with ``--plot`` draws Tu et al.'s probit figure (a panel per
factor, one point per run).
``--shape-bias [PNG]``: cue-conflict runs (``--data cue-conflict:ROOT``, any method) -> one line
per run (overall shape bias, shape / texture / other decision counts) and the standard
per-category dot plot (default shape_bias.png).
``--shift ID_RUN:SHIFT_RUN`` (repeat, one per model and method): ID and shift accuracy with 95%
Clopper-Pearson intervals (the ID accuracy on the shift set's classes for ImageNet-R/-A/ObjectNet),
effective robustness (Taori et al.: shift accuracy minus the logit-linear fit over ``--baseline``
pairs of other models or a ``--reference`` CSV; one fit per shift set, each with its own reference
columns; without either: "n/a: no baseline", never a line through the compared runs), and with ``--plot`` the one-point-per-model figure on probit axes, a panel per
shift set (y = x, Huber line, Spearman and R² in the legend).
``--paired``: exactly two runs on the same samples (run B against run A): both accuracies with
Clopper-Pearson intervals, the 2x2 right/wrong table, McNemar's exact p-value and the paired
bootstrap interval of acc(B) - acc(A) (``--seed``, ``--resamples``); a difference is marked
"not significant" unless p < 0.05 and the interval excludes 0.
``--reference FILE.csv`` alone (imagenet-testbed's ``robustness_top1s.csv`` layout): every model of
the table gets the metrics a run gets (``metrics.testbed``): per-corruption CE, mCE and relative mCE
of the ImageNet-C columns (on-disk and in-memory, named; normalised by the published AlexNet
constants or ``--alexnet MODEL|RUN``), shift accuracies and effective robustness against the
table's baseline models (the testbed's standard-training models; ``--baseline-type TYPE`` or
``--baseline MODEL`` for other tables; none: "n/a: no baseline"). ``--models A,B`` restricts the rows.
``--out FILE.json`` also writes the rows.
"""
from __future__ import annotations

import sys

from .common import HelpFormatter, group_pair


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="compare runs side by side (group drop table, ImageNet-X factors, shape bias)",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run directories written by `vlmprobe eval`")
    p.add_argument("--groups", default=None, metavar="FIELD", help="sample field defining groups, e.g. group")
    p.add_argument("--group-drop", default="common,counter", metavar="A,B",
                   help="the two group values compared: drop = 100 * (acc_A - acc_B)")
    p.add_argument("--factors", default=None, metavar="imagenet-x|FILE.jsonl",
                   help="ImageNet-X factor accuracies of runs on ImageNet val")
    p.add_argument("--factor-variant", default=None, choices=["top", "multi", "file"],
                   help="which ImageNet-X annotation (default: top for imagenet-x)")
    p.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                   help="with --factors: factor vs overall accuracy on probit axes (default factors.png); with "
                        "--shift: shift vs ID accuracy, one point per run pair (default shift.png)")
    p.add_argument("--shift", action="append", default=None, metavar="ID_RUN:SHIFT_RUN",
                   help="a model's in-distribution run and its run on a shifted set (repeat per model/method)")
    p.add_argument("--baseline", action="append", default=None, metavar="ID_RUN:SHIFT_RUN|MODEL",
                   help="with --shift: run pairs of baseline models defining the effective-robustness line; with "
                        "--reference alone: baseline models of the table by name (repeat or comma-separate)")
    p.add_argument("--reference", default=None, metavar="CSV",
                   help="with --shift: baseline accuracies from a CSV (columns model,id_accuracy,shift_accuracy, "
                        "or imagenet-testbed's robustness_top1s.csv); alone: every model of a robustness_top1s.csv "
                        "table with CE/mCE, shift accuracies and effective robustness")
    p.add_argument("--baseline-type", default=None, metavar="TYPE",
                   help="with --reference: baseline models of this type (default: the testbed's 'Standard "
                        "training'; types from a model_type column or imagenet-testbed's model_types.py)")
    p.add_argument("--alexnet", default=None, metavar="MODEL|RUN",
                   help="with --reference alone: normalise CE/mCE by this AlexNet row of the table or AlexNet "
                        "ImageNet-C run (default: the published AlexNet constants)")
    p.add_argument("--models", default=None, metavar="A,B,...",
                   help="with --reference alone: only these models' rows (the baseline fit keeps all)")
    p.add_argument("--transform", default="logit", choices=["logit", "probit"],
                   help="axes of the effective-robustness fit (Taori et al.: logit)")
    p.add_argument("--shape-bias", nargs="?", const="shape_bias.png", default=None, metavar="PNG",
                   help="shape bias of cue-conflict runs: table + per-category dot plot (default shape_bias.png)")
    p.add_argument("--labels", default=None, metavar="A,B,...",
                   help="with --shape-bias: one label per run (default: model (method))")
    p.add_argument("--paired", action="store_true",
                   help="paired tests of two runs on the same samples: McNemar exact + paired bootstrap")
    p.add_argument("--resamples", type=int, default=2000, help="with --paired: bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="with --paired: bootstrap seed")
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the table rows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VlmprobeError
    from ..metrics.compare import factor_plot, factor_table, format_table, group_table
    from ..metrics.rundata import load_run

    if args.plot is not None and not args.factors and not args.shift:
        raise VlmprobeError("--plot needs --factors (the ImageNet-X factor figure) or --shift (the shift figure)")
    if args.plot is not None and args.factors and args.shift:
        raise VlmprobeError("--plot draws one figure: give --factors or --shift, not both")
    table_mode = bool(args.reference and not args.shift)
    if args.baseline and not args.shift and not table_mode:
        raise VlmprobeError("--baseline defines the effective-robustness line of --shift pairs (or, with --reference "
                            "alone, names the table's baseline models)")
    if (args.alexnet or args.models) and not table_mode:
        raise VlmprobeError("--alexnet/--models go with --reference FILE.csv alone (the table mode)")
    if args.baseline_type and not args.reference:
        raise VlmprobeError("--baseline-type picks the baseline models of a --reference table")
    if (not args.groups and not args.factors and not args.shape_bias and not args.shift and not table_mode
            and not args.paired):
        raise VlmprobeError("nothing to compare: give --groups FIELD, --factors imagenet-x|FILE, --shape-bias, "
                            "--paired, --shift ID_RUN:SHIFT_RUN and/or --reference FILE.csv")
    if args.paired and len(args.run_dirs) != 2:
        raise VlmprobeError(f"--paired compares exactly two RUN_DIRs (got {len(args.run_dirs)})")
    if (args.groups or args.factors or args.shape_bias) and not args.run_dirs:
        raise VlmprobeError("--groups/--factors/--shape-bias compare the RUN_DIR arguments; give at least one")
    runs = [load_run(d) for d in args.run_dirs]
    out = {}
    if args.paired:
        out["paired"] = _paired(args)
    if args.shift:
        out["shift"] = _shift(args)
    if table_mode:
        out["reference"] = _reference_table(args)
    if args.groups:
        a, b = group_pair(args.group_drop)
        rows = group_table(runs, args.groups, a, b)
        print(format_table(["model", "method", f"{a} %", f"{b} %", "drop (points)", "n"],
                           [[r["model"], r["method"], 100 * r[a], 100 * r[b], r["drop"], r[f"n_{a}"] + r[f"n_{b}"]]
                            for r in rows]))
        out["groups"] = rows
    if args.factors:
        rows, variant = factor_table(runs, args.factors, args.factor_variant)
        factors = list(rows[0]["factors"])
        print(f"\nImageNet-X ({variant}-factor) error ratio = (1 - factor acc) / (1 - overall acc):")
        print(format_table(["model", "method", "acc %"] + factors,
                           [[r["model"], r["method"], 100 * r["accuracy"]] +
                            [r["factors"][f]["error_ratio"] for f in factors] for r in rows], digits=2))
        out["factors"] = {"variant": variant, "rows": rows}
        if args.plot is not None:
            print(f"figure: {factor_plot(rows, args.plot or 'factors.png', f'ImageNet-X {variant}-factor accuracy vs overall')}")
    if args.shape_bias:
        from ..metrics.shape_bias_plot import compare_shape_bias

        labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
        table = compare_shape_bias(args.run_dirs, args.shape_bias, labels)
        for label, res in table.items():
            o = res["overall"]
            sb = "-" if o["shape_bias"] is None else f"{o['shape_bias']:.3f}"
            print(f"{label}: shape bias {sb} (shape {o['shape']}, texture {o['texture']}, other {o['other']})")
        print(f"figure: {args.shape_bias}")
        out["shape_bias"] = table
    if args.out:
        from ..cache import atomic_write_json
        from ..metrics.report import jsonable

        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, jsonable(out))
        print(f"rows: {args.out}")
    return 0


def _paired(args) -> dict:
    """The --paired lines (printed) and their dictionary."""
    from ..errors import VlmprobeError
    from ..metrics.paired import correct_by_id, paired_test

    a, b = (correct_by_id(d) for d in args.run_dirs)
    t = paired_test(a, b, resamples=args.resamples, seed=args.seed)
    if not t["n"]:
        raise VlmprobeError(f"--paired: {args.run_dirs[0]} and {args.run_dirs[1]} share no scored sample id")
    ca, cb = t["accuracy_a_ci95"], t["accuracy_b_ci95"]
    print(f"A {args.run_dirs[0]}: {100 * t['accuracy_a']:.2f}% [{100 * ca['low']:.2f}, {100 * ca['high']:.2f}]")
    print(f"B {args.run_dirs[1]}: {100 * t['accuracy_b']:.2f}% [{100 * cb['low']:.2f}, {100 * cb['high']:.2f}]")
    tb, bs = t["table"], t["bootstrap"]
    print(f"paired on {t['n']} shared samples ({t['only_in_a']} only in A, {t['only_in_b']} only in B): "
          f"B - A = {100 * t['difference']:+.2f} points, 95% paired bootstrap [{100 * bs['low']:+.2f}, "
          f"{100 * bs['high']:+.2f}]; both right {tb['both_right']}, only A {tb['only_a_right']}, only B "
          f"{tb['only_b_right']}, both wrong {tb['both_wrong']}; McNemar exact p = {t['mcnemar_exact_p']:.4g}: "
          + ("significant" if t["significant"] else "not significant"))
    return {"run_a": str(args.run_dirs[0]), "run_b": str(args.run_dirs[1]), **t}


def _pair(text: str, flag: str):
    from pathlib import Path

    from ..errors import VlmprobeError
    from ..metrics.rundata import load_run

    a, sep, b = text.partition(":")
    if not sep or not a or not b:
        raise VlmprobeError(f"{flag} {text!r}: expected ID_RUN:SHIFT_RUN")
    for d in (a, b):
        if not Path(d).is_dir():
            raise VlmprobeError(f"{flag} {text!r}: {d} is not a run directory")
    return load_run(a), load_run(b)


def _shift(args) -> dict:
    """The --shift table (printed) and, with --plot, the figure. Each shift set (dataset spec, plus
    the on-the-fly corruption) has its own effective-robustness line: its --reference columns or the
    --baseline pairs on the same set; without them no line and no ER ("n/a: no baseline")."""
    from ..errors import VlmprobeError
    from ..metrics.compare import format_table, run_label
    from ..metrics.model_scatter import shift_figure
    from ..metrics.shifts import pair_accuracies, reference_baselines, shift_set, shift_table

    pairs = [(run_label(sh), i, sh) for i, sh in (_pair(t, "--shift") for t in args.shift)]
    sets = list(dict.fromkeys(shift_set(sh) for _, _, sh in pairs))
    baseline = None
    if args.reference:
        baseline, skipped = reference_baselines(args.reference, sets, args.baseline_type)
        for s in sets:
            print(f"reference {args.reference} for {s}: {len(baseline[s])} baseline models"
                  + (f" ({skipped[s]} without both accuracies or not of the baseline type skipped)"
                     if skipped[s] else ""), file=sys.stderr)
    if args.baseline:
        baseline = baseline or {s: [] for s in sets}
        for text in args.baseline:
            i, sh = _pair(text, "--baseline")
            if shift_set(sh) not in baseline:
                raise VlmprobeError(f"--baseline {text!r}: its shift set {shift_set(sh)} is none of the --shift "
                                    f"runs' ({', '.join(sets)})")
            a = pair_accuracies(i, sh)
            baseline[shift_set(sh)].append({"model": run_label(sh)["model"], "id": a["id_k"] / a["id_n"],
                                            "shift": a["shift_k"] / a["shift_n"]})
    table = shift_table(pairs, baseline, args.transform)
    pct = lambda v: None if v is None else 100 * v  # noqa: E731
    print(format_table(["model", "method", "shift set", "ID %", "ID 95% CI", "shift %", "shift 95% CI", "ER (points)"],
                       [[r["model"], r["method"], r["shift_set"], pct(r["id_accuracy"]),
                         "{:.1f}-{:.1f}".format(*(100 * v for v in r["id_ci95"])), pct(r["shift_accuracy"]),
                         "{:.1f}-{:.1f}".format(*(100 * v for v in r["shift_ci95"])),
                         table["sets"][r["shift_set"]]["no_fit"] if r.get("effective_robustness") is None
                         else f"{100 * r['effective_robustness']:+.1f}"] for r in table["rows"]]))
    from ..metrics.corruption import describe_mce

    for r in table["rows"]:
        if "mce_cells" in r:  # an ImageNet-C shift run (relative figures against the ID run's clean error)
            print(f"{r['model']} ({r['method']}) on {r['shift_set']}: " + describe_mce(
                {"complete": r["mce"] is not None, "partial_cells": r["mce_cells"], **r}))
    for name, s in table["sets"].items():
        if s["fit"]:
            f = s["fit"]
            print(f"effective robustness on {name} = shift acc - fit; {f['transform']} fit over the {f['fit_over']} "
                  f"({f['n_baseline']} points): slope {f['slope']:.3f}, intercept {f['intercept']:.3f}")
        else:
            print(f"effective robustness on {name}: {s['no_fit']} (give --baseline ID_RUN:SHIFT_RUN pairs of other "
                  "models or a --reference table; a line through the compared runs themselves is not Taori et al.'s)")
    if args.plot is not None:
        print(f"figure: {shift_figure(table, args.plot or 'shift.png', baseline is not None)}")
    return table


def _names(values) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def _reference_table(args) -> dict:
    """``--reference FILE.csv`` alone: the table's models with the metrics a run gets (printed;
    ``metrics.testbed``)."""
    from ..metrics.compare import format_table
    from ..metrics.testbed import NO_BASELINE, VARIANTS, evaluate_table, partial_label, partial_mce, read_table

    table = read_table(args.reference)
    res = evaluate_table(table, alexnet=args.alexnet, baseline_type=args.baseline_type,
                         baseline=_names(args.baseline), transform=args.transform, models=_names([args.models or ""]))
    pct = lambda v: None if v is None else 100 * v  # noqa: E731
    variants = [v for v in VARIANTS if any(v in r["corruption"] for r in res["rows"])]
    sets = list(res["sets"])
    header = ["model", "type", "baseline", "val %"]
    for v in variants:
        header += [f"mCE {v}", f"rel. mCE {v}", f"partial mCE {v}"]
    header += [f"{s} % / ER" for s in sets]

    def cells(r):
        out = [r["model"], r["type"] or "-", "yes" if r["baseline"] else "", pct(r["val"])]
        for v in variants:
            c = r["corruption"].get(v)
            out += ([None] * 3 if c is None else
                    [pct(c["mce"]), pct(c["relative_mce"]),
                     None if c["mce"] is not None else
                     (None if partial_mce(c) is None else f"{100 * partial_mce(c):.1f} ({partial_label(c)})")])
        for s in sets:
            e = r["shift"].get(s)
            out.append("-" if e is None else f"{100 * e['shift_accuracy']:.1f} / " + (
                res["sets"][s]["no_fit"] if e["effective_robustness"] is None
                else f"{100 * e['effective_robustness']:+.1f}"))
        return out

    print(format_table(header, [cells(r) for r in res["rows"]]))
    for v in variants:
        print(f"mCE {v}: normalised by {res['alexnet'][v]}; mCE only with all 15 corruptions x 5 severities, "
              "else the partial mean CE over the corruptions present")
    print("baseline: " + (res["baseline"]["rule"] or NO_BASELINE))
    for s, d in res["sets"].items():
        f = d["fit"]
        print(f"effective robustness on {s} (ID column {d['id_column']}): "
              + (f"{f['transform']} fit over {f['n_baseline']} baseline models: slope {f['slope']:.3f}, "
                 f"intercept {f['intercept']:.3f}" if f else d["no_fit"]))
    return res
