"""Label-space sampling: which classes one image is asked to choose from, and in which order.

``sample_candidates(label, K, N, rng, shuffle)`` returns class indices:

- ``N`` (2 <= N <= K, or 1): the true class plus ``N - 1`` distinct other classes drawn
  uniformly without replacement (``rng.choice`` over the K - 1 other classes);
- ``N = None`` ("all"): all K classes.

Order: ``shuffle=True`` permutes the list with the same ``rng`` (the paper shuffles labels per
image); ``shuffle=False`` keeps dataset class order (ascending index), so the true class's
position is not a giveaway either way. All randomness comes from ``rng``, which the runner
seeds per sample (run seed, sample id): the same sample gets the same candidates whatever the
batch size, order of processing or resume point.
"""
from __future__ import annotations

import numpy as np

from ..errors import VlmprobeError


def parse_num_candidates(value: str | int | None) -> int | None:
    """``"all"``/None -> None; a positive integer (str or int) -> int; else VlmprobeError."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise VlmprobeError(f"--num-candidates {value!r}: expected a positive integer or 'all'") from None
    if n < 1:
        raise VlmprobeError(f"--num-candidates {value!r}: expected a positive integer or 'all'")
    return n


def check_num_candidates(num_candidates: int | None, num_classes: int) -> None:
    """Raise when N exceeds the dataset's K classes (N = K is the same as 'all')."""
    if num_candidates is not None and num_candidates > num_classes:
        raise VlmprobeError(f"--num-candidates {num_candidates} exceeds the dataset's {num_classes} classes "
                            "(use 'all' or a smaller number)")


def sample_candidates(label: int, num_classes: int, num_candidates: int | None, rng: np.random.Generator,
                      shuffle: bool = True) -> list[int]:
    """Class indices offered for one image (see module docstring); always contains ``label``."""
    if label == -1:
        raise VlmprobeError("--num-candidates needs labeled images (the true class is always offered)")
    if not 0 <= label < num_classes:
        raise VlmprobeError(f"label {label} is outside the {num_classes} classes")
    check_num_candidates(num_candidates, num_classes)
    if num_candidates is None or num_candidates == num_classes:
        chosen = np.arange(num_classes)
    else:
        others = rng.choice(num_classes - 1, size=num_candidates - 1, replace=False)
        others = others + (others >= label)  # skip the true class: [0, K-1) -> [0, K) \ {label}
        chosen = np.sort(np.concatenate([[label], others]))
    if shuffle:
        chosen = rng.permutation(chosen)
    return [int(c) for c in chosen]


# ---------------------------------------------------------------- fixed per-class label spaces

DEFAULT_CONFUSERS = 20  # CounterAnimal's 1-vs-20 protocol


class LabelSpace:
    """Which classes each image is scored against: all K (``all``), or its own class plus a
    fixed list of "confusers" for that class (CounterAnimal's 1-vs-20 protocol: the 20 classes a
    reference CLIP confuses the class with most).

    ``--label-space`` values: ``all``; ``FILE.json`` = ``{class: [confuser, ...]}`` (class names
    or dataset class indices); ``RUN_DIR[@K]`` = the top-K (default 20) confusers per true class
    computed from a run of the same class list: mean softmax probability of each other class over
    the class's images when the run has scores.npy, else prediction counts (ties: lower index).
    The resolved table is recorded in the run's config. Offered classes keep ascending order;
    classes outside score ``-inf`` (probability 0) in scores.npy.

    A dataset whose protocol scores a fixed class subset (ImageNet-R/-A: their 200 classes,
    ``dataset.info["class_subset"]``) restricts every image to that subset when no
    ``--label-space`` is given (``subset``); ``--label-space all`` keeps all K classes.
    """

    def __init__(self, source: str | None = None, k: int = DEFAULT_CONFUSERS, explicit_all: bool = False):
        self.source, self.k, self.explicit_all = source, k, explicit_all
        self.table: dict[int, list[int]] | None = None
        self.subset: list[int] | None = None  # the dataset's protocol subset (same for every image)
        self.classnames: list[str] = []

    @classmethod
    def parse(cls, value: str | None) -> "LabelSpace":
        if value is None:
            return cls(None)
        if value.strip().lower() == "all":
            return cls(None, explicit_all=True)
        path, _, k = value.rpartition("@") if "@" in value else (value, "", "")
        if k and not k.isdigit():
            raise VlmprobeError(f"--label-space {value!r}: expected FILE.json, RUN_DIR or RUN_DIR@K")
        return cls(path, int(k) if k else DEFAULT_CONFUSERS)

    @property
    def restricted(self) -> bool:
        return self.source is not None or self.subset is not None

    def config(self) -> dict | str:
        if not self.restricted:
            return "all"
        if self.subset is not None:
            return {"source": "dataset class_subset", "num_classes": len(self.subset)}
        table = {self.classnames[c]: [self.classnames[j] for j in v] for c, v in sorted((self.table or {}).items())}
        return {"source": self.source, "k": self.k, "confusers": table}

    def setup(self, dataset, num_candidates: int | None = None) -> None:
        """Resolve the table against the dataset's class list (errors name file and class).
        ``num_candidates`` (a method's sampled label space) cannot combine with a dataset whose
        protocol scores a class subset (ImageNet-R/A): one line naming ``--label-space all``."""
        self.classnames = list(dataset.classnames)
        subset = dataset.info.get("class_subset")
        if self.source is None and not self.explicit_all and subset:
            bad = [c for c in subset if not 0 <= int(c) < len(self.classnames)]
            if bad:
                raise VlmprobeError(f"dataset {dataset.name}: class_subset index {bad[0]} outside its "
                                    f"{len(self.classnames)} classes")
            self.subset = sorted({int(c) for c in subset})
        if self.subset is not None and num_candidates is not None:
            raise VlmprobeError(f"dataset {dataset.name}: its protocol scores a {len(self.subset)}-class subset; "
                                "--num-candidates samples from all classes (add --label-space all)")
        if self.source is None:
            return
        from pathlib import Path

        path = Path(self.source).expanduser()
        if path.is_dir():
            self.table = confusers_from_run(path, self.classnames, self.k)
        elif path.is_file():
            self.table = _read_confusers(path, self.classnames)
        else:
            raise VlmprobeError(f"--label-space {self.source}: no such file or run directory")

    def candidates(self, sample) -> list[int] | None:
        """Class indices offered to ``sample`` (ascending), or None for all classes."""
        if not self.restricted:
            return None
        if self.subset is not None:
            return list(self.subset)
        if sample.label < 0:
            raise VlmprobeError("--label-space needs labeled images (each image is offered its own class)")
        if sample.label not in self.table:
            raise VlmprobeError(f"--label-space {self.source}: no confusers for class "
                                f"{self.classnames[sample.label]!r}")
        return sorted({sample.label, *self.table[sample.label]})

    def mask(self, scores: np.ndarray, samples) -> np.ndarray:
        """[B, K] scores with classes not offered to each sample set to -inf."""
        if not self.restricted:
            return scores
        out = np.full_like(scores, -np.inf)
        if self.subset is not None:
            out[:, self.subset] = scores[:, self.subset]
            return out
        for row, s in enumerate(samples):
            cands = self.candidates(s)
            out[row, cands] = scores[row, cands]
        return out


def _class_index(value, classnames: list[str], where: str) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        i = int(value)
        if not 0 <= i < len(classnames):
            raise VlmprobeError(f"{where}: class index {i} outside the dataset's {len(classnames)} classes")
        return i
    if value not in classnames:
        raise VlmprobeError(f"{where}: {value!r} is not a class of the dataset")
    return classnames.index(value)


def _read_confusers(path, classnames: list[str]) -> dict[int, list[int]]:
    import json

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise VlmprobeError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise VlmprobeError(f"{path}: expected {{class: [confuser classes]}}")
    return {_class_index(c, classnames, str(path)): [_class_index(j, classnames, f"{path} [{c!r}]") for j in v]
            for c, v in raw.items()}


def confusers_from_run(run_dir, classnames: list[str], k: int) -> dict[int, list[int]]:
    """{true class: top-k other classes} from a run's confusion (see ``LabelSpace``)."""
    from ..metrics.rundata import load_run

    run = load_run(run_dir)
    if list(run.classnames) != list(classnames):
        raise VlmprobeError(f"--label-space {run_dir}: the run's class list ({len(run.classnames)} classes) differs "
                            f"from the dataset's ({len(classnames)})")
    if run.labels is None or not len(run.labels):
        raise VlmprobeError(f"--label-space {run_dir}: the run has no labeled predictions")
    K = len(classnames)
    if run.scores is not None:
        s = run.scores.astype(np.float64)
        s = np.where(np.isfinite(s), s, -np.inf)
        p = np.exp(s - s.max(1, keepdims=True))
        weight = p / p.sum(1, keepdims=True)
    else:
        weight = np.zeros((len(run.labels), K))
        ok = run.predictions >= 0
        weight[np.flatnonzero(ok), run.predictions[ok]] = 1.0
    table = {}
    for c in np.unique(run.labels):
        w = weight[run.labels == c].mean(0)
        w[c] = -np.inf
        order = np.lexsort((np.arange(K), -w))  # highest weight first, ties to the lower index
        table[int(c)] = [int(j) for j in order[:min(k, K - 1)]]
    return table


def label_space_option():
    """The ``--label-space`` field of a method's options (one flag shared by every method)."""
    from .. import options

    return options.option(None, "per-class label space (CounterAnimal 1-vs-20): each image is scored against its "
                                "class plus that class's confusers, from a JSON {class: [classes]} or the top-K "
                                "(default 20) confusions of a reference run of the same classes; default all",
                          metavar="all|FILE.json|RUN_DIR[@K]")


# ---------------------------------------------------------------- random vs hard distractors

class CandidateRule:
    """Which N-1 distractors join the true class when ``--num-candidates N`` samples a label
    space per image (``--candidates``):

    - ``random`` (default): N-1 other classes uniformly at random (``sample_candidates``; the
      paper's label-space ablation);
    - ``hard:CLIP_RUN``: the N-1 other classes with the highest scores in CLIP_RUN's score row of
      the same sample id (a run of the same class list with scores.npy, e.g. a CLIP zero-shot run
      on the same dataset): the classes that CLIP confuses this image with most (FOCI,
      gregor-ge/FOCI-Benchmark, mines multiple-choice distractors with CLIP). Ties go to the lower
      class index. A sample missing from CLIP_RUN, or whose score row is not finite, is an error
      naming the id.

    The offered list is sorted by class index, then permuted with the sample's seeded ``rng`` when
    ``shuffle`` (as ``sample_candidates``)."""

    def __init__(self, value: str | None = None):
        value = (value or "random").strip()
        if value == "random":
            self.kind, self.source = "random", None
        elif value.startswith("hard:") and value[5:]:
            self.kind, self.source = "hard", value[5:]
        else:
            raise VlmprobeError(f"--candidates {value!r}: expected random or hard:CLIP_RUN")
        self.rows: dict[str, np.ndarray] = {}
        self.run_info: dict = {}

    @classmethod
    def fixed(cls, table: dict[str, list[int]]) -> "CandidateRule":
        """Each sample id's offered classes exactly as given, in the given order (``vlmprobe audit``
        permutes a run's recorded candidates with it); takes precedence over every other rule."""
        rule = cls("random")
        rule.kind, rule.table = "fixed", {str(k): [int(c) for c in v] for k, v in table.items()}
        return rule

    def config(self) -> str | dict:
        if self.kind == "fixed":
            return {"rule": "fixed", "sha256": _table_key(self.table)}
        return "random" if self.kind == "random" else {"rule": "hard", "run": self.source, **self.run_info}

    def setup(self, dataset, num_candidates: int | None) -> None:
        if self.kind != "hard":
            return
        if num_candidates is None:
            raise VlmprobeError(f"--candidates hard:{self.source} chooses N-1 distractors: give --num-candidates N")
        from pathlib import Path

        from ..metrics.rundata import load_run

        if not Path(self.source).is_dir():
            raise VlmprobeError(f"--candidates hard:{self.source}: not a run directory")
        run = load_run(self.source)
        if list(run.classnames) != list(dataset.classnames):
            raise VlmprobeError(f"--candidates hard:{self.source}: the run's class list ({len(run.classnames)} "
                                f"classes) differs from the dataset's ({len(dataset.classnames)})")
        if run.scores is None:
            raise VlmprobeError(f"--candidates hard:{self.source}: the run has no scores.npy")
        self.rows = dict(zip(run.ids, np.asarray(run.scores, dtype=np.float64)))
        self.run_info = {"model": (run.config.get("model") or {}).get("spec"), "method": run.method}

    def choose(self, sample, num_classes: int, num_candidates: int | None, rng, shuffle: bool) -> list[int]:
        if self.kind == "fixed":
            if sample.id not in self.table:
                raise VlmprobeError(f"fixed candidates: none given for sample {sample.id!r}")
            return list(self.table[sample.id])
        if self.kind == "random" or num_candidates is None or num_candidates >= num_classes:
            return sample_candidates(sample.label, num_classes, num_candidates, rng, shuffle)
        if sample.label < 0:
            raise VlmprobeError("--candidates hard needs labeled images (the true class is always offered)")
        row = self.rows.get(sample.id)
        if row is None:
            raise VlmprobeError(f"--candidates hard:{self.source}: no score row for sample {sample.id!r}")
        if not np.isfinite(row).all():
            raise VlmprobeError(f"--candidates hard:{self.source}: sample {sample.id!r} has non-finite scores")
        w = row.copy()
        w[sample.label] = -np.inf
        order = np.lexsort((np.arange(num_classes), -w))  # highest score first, ties to the lower index
        chosen = np.sort(np.concatenate([[sample.label], order[:num_candidates - 1]]))
        if shuffle:
            chosen = rng.permutation(chosen)
        return [int(c) for c in chosen]


def _table_key(table: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:16]


def candidates_option():
    """The ``--candidates`` field of a method's options (generate, likelihood)."""
    from .. import options

    return options.option("random", "with --num-candidates N: the N-1 distractors: random (default), or "
                                    "hard:CLIP_RUN = the N-1 classes CLIP_RUN scores highest on the same image",
                          metavar="random|hard:CLIP_RUN")
