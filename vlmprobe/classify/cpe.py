"""CPE: a weighted, description-enriched prompt ensemble for CLIP's worst classes.

Shao et al., "Investigating the Limitation of CLIP Models: The Worst-Performing Categories"
(arXiv 2310.03324). What this module implements (label-free: ground-truth labels are never read
while building; they feed only the report):

Inputs: image embeddings ``f(x)`` [N, D] (``probe.extract.extract_features``, cached), a pool of
T candidate templates with class embeddings ``E_t`` [T, K, D] (``classify.ensemble``), the
CLIP logit scale ``λ``. Scores of template t: ``s_t(x, c) = λ <f(x), E_t[c]>`` [N, K].

1. Pseudo labels: ``ŷ(x) = argmax_c s_0(x, c)`` with the base classifier
   ``W_0 = normalize(mean_t E_t)`` (uniform ensemble of the pool).
2. Per template t (``metrics.margin``): ``m_t(x) = s_t(x, ŷ) - max_{j≠ŷ} s_t(x, j)``,
   ``CMM_t[c] = mean_{x: ŷ(x)=c} m_t(x)``, ``worstk_t = mean of the k smallest CMM_t[c]``
   (``metrics.accuracy.worst_k``; classes no image is pseudo-labelled as have no CMM and are
   left out, k capped; ensemble.json lists them under ``never_predicted``).
   Worst categories: the k classes with the smallest CMM under ``W_0``.
3. Weights: templates ranked by ``worstk_t`` (descending, ties by pool order); the top m are
   kept, ``w_t = softmax_t(worstk_t / τ)`` over them, 0 for the others.
4. Enrichment: for each worst class c with descriptions ``d_1..d_n`` (a describer LM or a
   file), prompts ``format.format(c=c, d=d_i)`` (default "a photo of a {c}, which has {d}.") and
   ``e_c = normalize(mean_i e(prompt_i))``; they join as one more ensemble member of average
   weight ``1/m``: ``W[c] = normalize(sum_t w_t E_t[c] + e_c / m)`` for worst classes,
   ``W[c] = normalize(sum_t w_t E_t[c])`` otherwise.

Defaults: k = 10 (the paper's worst-10 figure), m = 20, τ = 1 (CMM is in logit units, so τ is
too). The paper's full text was not reachable from this workspace, so these and the softmax
rule are this implementation's choices, not the paper's stated values (docs/methods.md says so).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cache import atomic_write_json, atomic_write_text, content_key
from ..data.templates import SINGLE, PoolMember, check_pool_classes, load_template_pool
from ..errors import VlmprobeError
from ..metrics.accuracy import worst_k
from ..metrics.margin import class_matching_margin
from .describe import DEFAULT_DESCRIBER_PROMPT, check_describer, generate_descriptions, read_descriptions
from .ensemble import combine, group_mean, pool_embeddings, save_ensemble

DESCRIPTION_FORMAT = "a photo of a {c}, which has {d}."
REPORT_WORST = (1, 5, 10)


@dataclass
class CpeOptions:
    """Options of ``vlmprobe cpe`` (one field = one flag)."""

    templates: str = "imagenet"  # template pool: imagenet | single | FILE (see data.templates)
    k: int = 10  # worst-k: classes whose mean CMM scores a template; also the enriched classes
    top_m: int = 20  # templates kept (highest worst-k CMM)
    temperature: float = 1.0  # τ of the softmax over kept templates' worst-k CMM (logit units)
    describer: str | None = None  # hf:PATH_OR_ID | vlm:SPEC
    describer_prompts: list[str] = field(default_factory=lambda: [DEFAULT_DESCRIBER_PROMPT])
    descriptions: str | None = None  # JSON {class: [description, ...]}
    description_format: str = DESCRIPTION_FORMAT
    batch_size: int = 64
    workers: int = 0
    progress: bool = True

    def check(self, classnames) -> None:
        """One line for options that cannot work on a dataset with these classes."""
        num_classes = len(classnames)
        if self.describer and self.descriptions:
            raise VlmprobeError("give --describer or --descriptions, not both")
        if not 1 <= self.k <= num_classes:
            raise VlmprobeError(f"--k {self.k}: must be between 1 and the number of classes ({num_classes})")
        if self.top_m < 1:
            raise VlmprobeError(f"--top-m {self.top_m}: must be at least 1")
        if not self.temperature > 0:
            raise VlmprobeError(f"--temperature {self.temperature}: must be > 0")
        try:
            probe = self.description_format.format(c="\0c", d="\0d")
        except (KeyError, IndexError, ValueError):
            probe = ""
        if "\0c" not in probe or "\0d" not in probe:
            raise VlmprobeError(f"--description-format {self.description_format!r}: needs {{c}} and {{d}} and no other "
                                "placeholder (write literal braces as {{ and }})")
        if self.descriptions:
            read_descriptions(self.descriptions, classnames)
        if self.describer:
            check_describer(self.describer)
        pool = load_template_pool(self.templates)
        if not pool:
            raise VlmprobeError(f"--templates {self.templates}: empty template pool")
        check_pool_classes(pool, classnames, f"--templates {self.templates}")


def template_scores(features: torch.Tensor, member_emb: torch.Tensor, scale: float) -> torch.Tensor:
    """[N, K]: λ f(x) E_t^T for one member's class embeddings [K, D]."""
    return scale * features @ member_emb.T


def rank_templates(features: torch.Tensor, member_emb: torch.Tensor, scale: float, k: int, top_m: int,
                   temperature: float) -> dict:
    """Steps 1-3 of the module docstring. ``features`` [N, D] (valid rows only), ``member_emb``
    [T, K, D]. Returns pseudo labels, base scores, per-template class CMM and worst-k CMM, the
    worst classes, the ranking and the weights [T]."""
    t_count, num_classes = member_emb.shape[:2]
    base = combine(member_emb, torch.full((t_count,), 1.0 / t_count))
    base_scores = template_scores(features, base, scale).numpy()
    pseudo = base_scores.argmax(1)
    cmm = np.stack([class_matching_margin(template_scores(features, member_emb[t], scale).numpy(), pseudo, num_classes)
                    for t in range(t_count)])  # [T, K]
    worst = np.array([worst_k(cmm[t], k)[0] for t in range(t_count)])
    base_cmm = class_matching_margin(base_scores, pseudo, num_classes)
    _, worst_classes, _ = worst_k(base_cmm, k)
    order = np.argsort(-worst, kind="stable")
    kept = order[:min(top_m, t_count)]
    z = worst[kept] / temperature
    w = np.exp(z - z.max())
    weights = np.zeros(t_count)
    weights[kept] = w / w.sum()
    return {"pseudo_labels": pseudo, "base_scores": base_scores, "class_cmm": cmm, "worst_k_cmm": worst,
            "base_class_cmm": base_cmm, "worst_classes": [int(c) for c in worst_classes],
            "ranking": [int(t) for t in order], "kept": [int(t) for t in kept], "weights": weights}


def enriched_prompts(classnames, worst_classes, descriptions: dict, fmt: str) -> dict[str, list[str]]:
    """{worst class name: [fmt.format(c=name, d=description), ...]} for worst classes with descriptions."""
    used = {}
    for c in worst_classes:
        items = [fmt.format(c=classnames[c], d=d) for d in descriptions.get(classnames[c], [])]
        if items:
            used[classnames[c]] = items
    return used


def description_term(model, classnames, used: dict[str, list[str]], weight: float) -> torch.Tensor | None:
    """[K, D]: ``weight * e_c`` (normalised mean embedding of class c's enriched prompts) for the
    classes in ``used``, 0 elsewhere; None when ``used`` is empty."""
    if not used:
        return None
    owner = [g for g, prompts in enumerate(used.values()) for _ in prompts]
    groups = group_mean(model.encode_texts([p for ps in used.values() for p in ps]).cpu(), owner, len(used))
    extra = torch.zeros(len(classnames), groups.shape[1])
    for g, name in enumerate(used):
        extra[list(classnames).index(name)] = weight * groups[g]
    return extra


def _descriptions(opts: CpeOptions, classnames, worst_names, out: Path, device: str) -> tuple[dict, dict]:
    """Descriptions for the worst classes and their provenance (generated ones cached in
    ``out/descriptions.json``, keyed by describer, prompts and classes)."""
    if opts.descriptions:
        found = read_descriptions(opts.descriptions, classnames)
        return found, {"source": "file", "path": str(opts.descriptions)}
    if not opts.describer:
        return {}, {"source": None}
    key = content_key({"describer": opts.describer, "prompts": opts.describer_prompts, "classes": worst_names})
    cache = out / "descriptions.json"
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached["descriptions"], {"source": "describer", "describer": opts.describer,
                                            "prompts": opts.describer_prompts, "cached": True}
    found, extra = generate_descriptions(opts.describer, worst_names, opts.describer_prompts, device=device,
                                         progress=opts.progress)
    atomic_write_json(cache, {"key": key, "describer": opts.describer, "prompts": opts.describer_prompts,
                              "descriptions": found, "raw": extra["raw"], "empty": extra["empty"]})
    return found, {"source": "describer", "describer": opts.describer, "prompts": opts.describer_prompts,
                   "cached": False, "empty": extra["empty"]}


def _images_identity(dataset) -> dict:
    """Which images the ensemble was built on (ids and paths only: no labels)."""
    return {"name": dataset.name, "num_images": len(dataset),
            "images_sha": content_key([[s.id, s.image] for s in dataset.samples])}


def build(model, dataset, out, options: CpeOptions | None = None, **overrides) -> dict:
    """Build a CPE ensemble of ``model`` (CLIP; object or spec) on ``dataset``'s images (object
    or spec) into ``out``: ``ensemble.json``, ``classifier.pt`` [K, D], ``report.json`` and
    ``ablation.md``. ``overrides`` set CpeOptions fields. Returns report.json's dict."""
    from ..models.base import require_kind
    from .embeddings import embedding_features

    if isinstance(model, str):
        from ..models import load_model

        model = load_model(model)
    if isinstance(dataset, str):
        from ..data import load_dataset

        dataset = load_dataset(dataset)

    opts = options or CpeOptions()
    for k, v in overrides.items():
        if not hasattr(opts, k):
            raise VlmprobeError(f"cpe: unknown option {k!r}")
        setattr(opts, k, v)
    require_kind(model, "clip", "vlmprobe cpe")
    classnames = list(dataset.classnames)
    opts.check(classnames)
    pool = load_template_pool(opts.templates)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    feats = embedding_features(model, dataset, batch_size=opts.batch_size, workers=opts.workers,
                               progress=opts.progress)  # shared with zero-shot runs (classify/embeddings.py)
    valid = np.asarray(feats.valid, dtype=bool)
    if not valid.any():
        raise VlmprobeError(f"cpe: no readable image in {dataset.name}")
    features = torch.from_numpy(np.asarray(feats.get("embed"))[valid].astype(np.float32))  # [N, D]
    member_emb = pool_embeddings(model, classnames, pool)  # [T, K, D]
    scale = model.logit_scale
    ranked = rank_templates(features, member_emb, scale, opts.k, opts.top_m, opts.temperature)
    worst_names = [classnames[c] for c in ranked["worst_classes"]]
    descriptions, provenance = _descriptions(opts, classnames, worst_names, out, str(model.device))
    desc_weight = 1.0 / len(ranked["kept"])
    used_prompts = enriched_prompts(classnames, ranked["worst_classes"], descriptions, opts.description_format)
    extra = description_term(model, classnames, used_prompts, desc_weight)
    classifier = combine(member_emb, torch.as_tensor(ranked["weights"], dtype=torch.float32), extra)

    ensemble = {
        "method": "cpe", "paper": "arXiv 2310.03324",
        "model": {"spec": model.spec, "fingerprint": json.loads(json.dumps(getattr(model, "fingerprint", None),
                                                                          default=str)),
                  "logit_scale": scale},
        "classnames": classnames,
        "images": {**_images_identity(dataset), "used": int(valid.sum()), "unreadable": int((~valid).sum())},
        "options": {"templates": opts.templates, "k": opts.k, "top_m": opts.top_m, "temperature": opts.temperature,
                    "description_format": opts.description_format, "description_weight": desc_weight},
        "templates": [{**m.to_config(), "rank": ranked["ranking"].index(t), "worst_k_cmm": float(ranked["worst_k_cmm"][t]),
                       "weight": float(ranked["weights"][t]), "kept": t in ranked["kept"]} for t, m in enumerate(pool)],
        "worst_classes": [{"class": classnames[c], "base_cmm": float(ranked["base_class_cmm"][c])}
                          for c in ranked["worst_classes"]],
        "never_predicted": [classnames[c] for c in np.flatnonzero(np.isnan(ranked["base_class_cmm"]))],
        "descriptions": {"provenance": provenance, "prompts": used_prompts},
    }
    save_ensemble(out, ensemble, classifier)
    report = ablation_report(model, dataset, valid, features, member_emb, ranked, classifier, opts, scale)
    report.update({"ensemble": str(out), "seconds": round(time.perf_counter() - start, 2),
                   "features_cache": str(feats.path), "environment": _environment(),
                   "config": {"model": model.spec, "data": dataset.describe(), "options": asdict(opts)}})
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "ablation.md", ablation_markdown(report))
    return report


def rebuild_classifier(model, ensemble: dict) -> torch.Tensor:
    """[K, D] from ``ensemble.json``'s dict alone (pool, weights, description prompts and weight):
    the check that the file holds everything needed to rebuild ``classifier.pt``."""
    classnames = ensemble["classnames"]
    pool = [PoolMember(t["name"], t["template"]) if "template" in t else
            PoolMember(t["name"], per_class=tuple((c, tuple(p)) for c, p in t["per_class"].items()))
            for t in ensemble["templates"]]
    weights = torch.tensor([t["weight"] for t in ensemble["templates"]], dtype=torch.float32)
    extra = description_term(model, classnames, ensemble["descriptions"]["prompts"],
                             ensemble["options"]["description_weight"])
    return combine(pool_embeddings(model, classnames, pool), weights, extra)


def _environment() -> dict:
    from ..runs import environment

    return environment()


def ablation_rows(member_emb: torch.Tensor, single_emb: torch.Tensor, ranked: dict, classifier: torch.Tensor) -> dict:
    """name -> classifier [K, D] for the four rows of the ablation table."""
    t_count = member_emb.shape[0]
    return {"single template": single_emb,
            "uniform ensemble": combine(member_emb, torch.full((t_count,), 1.0 / t_count)),
            "CMM-weighted (no descriptions)": combine(member_emb, torch.as_tensor(ranked["weights"], dtype=torch.float32)),
            "CPE": classifier}


def ablation_report(model, dataset, valid, features, member_emb, ranked, classifier, opts: CpeOptions, scale) -> dict:
    """Per row: top-1, worst-1/5/10/k accuracy and Spearman(class CMM, class accuracy) when labels
    exist; worst-k CMM (pseudo labels of the base classifier) always. Labels are read here only."""
    from ..metrics.report import summarize

    classnames = list(dataset.classnames)
    single = pool_embeddings(model, classnames, [PoolMember(SINGLE[0], SINGLE[0])])[0]
    labels = np.array([s.label for s in dataset.samples])[valid]
    labeled = bool((labels >= 0).all())
    ks = sorted({k for k in REPORT_WORST if k <= len(classnames)} | {opts.k})
    rows, per_class = {}, {}
    for name, w in ablation_rows(member_emb, single, ranked, classifier).items():
        scores = template_scores(features, w, scale).numpy()
        cmm = class_matching_margin(scores, ranked["pseudo_labels"], len(classnames))
        row = {"worst_k_cmm": worst_k(cmm, opts.k)[0]}
        if labeled:
            s = summarize(labels, scores.argmax(1), scores, classnames, worst_k=ks, pseudo_labels=ranked["pseudo_labels"])
            row.update(top1=s["top1"], worst_accuracy={k: s["worst_k_accuracy"][str(k)]["value"] for k in ks},
                       worst_classes={k: s["worst_k_accuracy"][str(k)]["classes"] for k in ks},
                       spearman_cmm_accuracy=s["cmm_pseudo"]["spearman_vs_accuracy"],
                       zero_accuracy_classes=sum(1 for v in s["per_class_accuracy"].values() if v == 0))
            per_class[name] = list(s["per_class_accuracy"].values())
        rows[name] = row
    report = {"labeled": labeled, "k": opts.k, "worst_k_reported": ks, "rows": rows}
    if labeled:  # before/after on the k classes CPE chose (by base CMM, without labels)
        report["worst_classes_before_after"] = {
            classnames[c]: {"base_cmm": float(ranked["base_class_cmm"][c]),
                            "accuracy_uniform": per_class["uniform ensemble"][c], "accuracy_cpe": per_class["CPE"][c]}
            for c in ranked["worst_classes"]}
    return report


def ablation_markdown(report: dict) -> str:
    """The ablation table as Markdown (accuracies in %)."""
    ks, k = report["worst_k_reported"], report["k"]
    head = ["classifier"]
    if report["labeled"]:
        head += ["top-1"] + [f"worst-{x} acc" for x in ks]
    head += [f"worst-{k} CMM"] + (["Spearman(CMM, acc)", "classes at 0%"] if report["labeled"] else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for name, r in report["rows"].items():
        cells = [name]
        if report["labeled"]:
            cells += [pct(r["top1"])] + [pct(r["worst_accuracy"][x]) for x in ks]
        cells.append(f"{r['worst_k_cmm']:.3f}")
        if report["labeled"]:
            sp = r["spearman_cmm_accuracy"]
            cells += ["-" if sp is None else f"{sp:.3f}", str(r["zero_accuracy_classes"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
