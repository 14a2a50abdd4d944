"""``vlmprobe audit RUN_DIR``: re-run a seeded sample of a generation or likelihood run with the
image order shuffled, batch size 1 instead of the run's, and each image's candidate order
permuted (closed world, likelihood); report every sample whose prediction flips and the largest
score difference per knob (``vlmprobe.classify.audit``). Writes OUT/audit.json and one run
directory per knob (default OUT: RUN_DIR/audit)."""
from __future__ import annotations

from .common import positive_int


def register(subparsers) -> None:
    from ..classify.audit import KNOBS

    p = subparsers.add_parser("audit", help="order / batch-size / candidate-order audit of a run (prediction flips)",
                              description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished generate or likelihood run directory")
    p.add_argument("--n", type=positive_int, default=32, help="samples re-run (seeded choice; default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample choice, the order and the permutations")
    p.add_argument("--knobs", default=",".join(KNOBS), metavar="K[,K...]",
                   help=f"which knobs to turn (default all: {', '.join(KNOBS)})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="the reference batch size of the order / candidates re-runs (default: the run's)")
    p.add_argument("--out", default=None, metavar="DIR", help="audit directory (default RUN_DIR/audit)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..classify.audit import audit_run

    out = Path(args.out) if args.out else Path(args.run_dir) / "audit"
    knobs = [k.strip() for k in args.knobs.split(",") if k.strip()]
    res = audit_run(args.run_dir, out, n=args.n, seed=args.seed, knobs=knobs, batch_size=args.batch_size,
                    progress=not args.no_progress)
    for knob, r in res["knobs"].items():
        if not r.get("applicable"):
            print(f"{knob}: not applicable ({r['why']})")
            continue
        diff = r["max_abs_score_diff"]
        extra = f", {r['responses_changed']} answers changed" if "responses_changed" in r else ""
        print(f"{knob} (batch size {r['batch_size']}): {r['num_flips']} of {r['n']} predictions flipped, largest score "
              f"difference {'n/a' if diff is None else f'{diff:.3g}'}{extra}")
        for f in r["flips"]:
            print(f"  flip {f['id']}: {f['before']} -> {f['after']} (label {f['label']})")
    print(f"audit: {out / 'audit.json'}")
    return 0
