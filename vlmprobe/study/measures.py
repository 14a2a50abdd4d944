"""The measurement table of a study: one entry per kind of run (name -> which models it applies
to, its options and defaults, how to build the ``vlmprobe`` command, which report section shows it).

A new measurement is one ``Measure`` added to ``MEASURES``. Options whose YAML value is a list
are *axes*: the study runs every combination
(``generate`` with ``num_candidates: [all, 2, 5]`` is three runs). ``argv`` returns the exact
command line the runner executes in-process (``vlmprobe.cli.main``), so every run directory is
one a user could have made by hand.

Robustness measurements: group shift is not a measure but a dataset property (``groups:`` in the
study adds ``--groups``/``--group-drop`` to every eval run on it); ``ood`` scores the OOD dataset
with the same model and method and runs ``vlmprobe metrics ID_RUN --ood OOD_RUN``; ``shape_bias``
is ``vlmprobe eval`` on a cue-conflict dataset with the model kind's method; ``retrieval`` is
``vlmprobe retrieval`` on a captions dataset; ``factors`` reads the eval run of the same model and
dataset and runs ``vlmprobe metrics RUN --factors imagenet-x|FILE.jsonl`` (ImageNet-X factor
accuracy and error ratio); ``shift`` runs the method on the entry's (ID) dataset and on a shifted
dataset and writes ``vlmprobe compare --shift ID_RUN:SHIFT_RUN --out shift.json`` (ID and shift
accuracy, the report's effective-robustness figure).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

CLIP, VLM, CLASSIFIER = "clip", "vlm", "classifier"


@dataclass(frozen=True)
class Option:
    default: object
    types: tuple  # accepted Python types of one value
    axis: bool = False  # a list value means one run per element
    choices: tuple = ()  # allowed values (empty: any of ``types``)
    help: str = ""
    in_id: bool = True  # part of the run directory's name (inputs such as file paths are not)


@dataclass(frozen=True)
class Ctx:
    """What ``argv`` needs besides the options: the run's model spec / dataset args / out dir,
    and the directories of the runs it depends on (by role)."""

    model: str  # model spec (with +adapter:... for fine-tuned models)
    load_args: list  # --device/--dtype/... of the model entry
    data_args: list  # --data/--split/--limit/--classes/... of the dataset entry ([] when none)
    seed: int
    out: str
    deps: dict = field(default_factory=dict)  # role -> run directory
    datasets: dict = field(default_factory=dict)  # dataset name -> its data args (probe train/val)
    models: dict = field(default_factory=dict)  # model name -> spec (probe reference)
    group_args: list = field(default_factory=list)  # --groups/--group-drop of the dataset entry (eval runs)


@dataclass(frozen=True)
class Measure:
    name: str
    applies_to: tuple  # model kinds
    options: dict  # option name -> Option
    argv: Callable[[Ctx, dict], list]
    section: str  # report section that shows it
    result_file: str = "results.json"  # written last: its presence marks a finished run
    needs_dataset: bool = True  # runs once per (model, dataset); False: once per model
    shards: bool = False  # under a multi-process launch every process takes a share (engine jobs);
    # False: rank 0 runs it alone while the others wait
    # role -> (measure name, {option: value}[, dataset name]) on the same model (and dataset unless named)
    deps: Callable[[dict], dict] = lambda params: {}
    help: str = ""
    resolve: Callable[[dict, str], dict] = lambda params, kind: params  # options completed by the model's kind


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _eval(method: str, flags: dict) -> Callable[[Ctx, dict], list]:
    """``vlmprobe eval --method METHOD``; ``flags``: option -> how it becomes flags."""
    def argv(ctx: Ctx, p: dict) -> list:
        out = ["eval", "--model", ctx.model, *ctx.load_args, *ctx.data_args, *ctx.group_args, "--seed",
               str(ctx.seed), "--method", method, "--out", ctx.out, "--no-progress"]
        for key, how in flags.items():
            v = p[key]
            if how == "bool":
                out += [_flag(key)] if v else []
            elif v is not None:
                out += [_flag(key), str(v)]
        return out
    return argv


def _zeroshot(ctx: Ctx, p: dict) -> list:
    if p["cpe_templates"] is None:
        return _eval("zeroshot", {"templates": "value"})(ctx, p)
    return _eval("zeroshot", {})(ctx, p) + ["--ensemble", ctx.deps["ensemble"]]


def _cpe(ctx: Ctx, p: dict) -> list:
    out = ["cpe", "--model", ctx.model, *ctx.load_args, *ctx.data_args, "--seed", str(ctx.seed), "--out", ctx.out,
           "--no-progress", "--templates", str(p["templates"]), "--k", str(p["k"]), "--top-m", str(p["top_m"]),
           "--temperature", str(p["temperature"])]
    out += ["--descriptions", p["descriptions"]] if p["descriptions"] else []
    return out + (["--description-format", p["description_format"]] if p["description_format"] else [])


def _probe(ctx: Ctx, p: dict) -> list:
    """``vlmprobe probe``: each of the train/val/test dataset entries gives its spec and split
    (``SPEC@SPLIT``), ``limit`` and ``image_root`` (``--ROLE-limit``, ``--ROLE-image-root``);
    ``classes`` comes from the test entry (the schema requires the entries to agree on it)."""
    roles = {"train": ctx.datasets[p["train"]], "test": ctx.data_args}
    if p["val"]:
        roles["val"] = ctx.datasets[p["val"]]
    out = ["probe", "--model", ctx.model, *ctx.load_args]
    for role, data in roles.items():
        out += [f"--{role}", _with_split(data)]
        for key in ("limit", "image-root"):
            if f"--{key}" in data:
                out += [f"--{role}-{key}", data[data.index(f"--{key}") + 1]]
    if "--classes" in ctx.data_args:
        out += ["--classes", ctx.data_args[ctx.data_args.index("--classes") + 1]]
    out += ["--layers", str(p["layers"]), "--pool", str(p["pool"]), "--seed", str(ctx.seed), "--out", ctx.out,
            "--no-progress"]
    if p["reference"]:
        out += ["--reference", ctx.models[p["reference"]]]
    return out


def _with_split(data_args: list) -> str:
    """probe takes ``SPEC@SPLIT`` rather than ``--split``."""
    spec = data_args[data_args.index("--data") + 1]
    if "--split" in data_args:
        spec += "@" + data_args[data_args.index("--split") + 1]
    return spec


def _wikiqa(ctx: Ctx, p: dict) -> list:
    cond = set(p["condition"].split("+"))
    out = ["wikiqa", "--model", ctx.model, *ctx.load_args, "--data", p["data"], "--method", p["method"],
           "--seed", str(ctx.seed), "--out", ctx.out, "--no-progress"]
    if "no_image" not in cond:
        out += ["--images", p["images"]]
    out += ["--oracle-class"] if "oracle_class" in cond else []
    out += ["--no-image"] if "no_image" in cond else []
    if "classification" in ctx.deps and "image" in cond and "oracle_class" not in cond:
        out += ["--classification-run", ctx.deps["classification"]]
    return out


def _frequency(ctx: Ctx, p: dict) -> list:
    out = ["frequency", "--corpus", p["corpus"], "--run", ctx.deps["run"], "--out", ctx.out, "--no-progress"]
    return out + (["--roles", p["roles"]] if p["roles"] else [])


# options of an eval method that ``ood`` and ``shape_bias`` pass on to the method they run
FORWARDED = {"zeroshot": ("templates",), "likelihood": ("answer_prefix",), "generate": (), "classifier": ()}


def _forwarded(p: dict) -> dict:
    return {k: p[k] for k in FORWARDED[p["method"]] if p[k] is not None}


def _method_by_kind(defaults: dict) -> Callable[[dict, str], dict]:
    """``method`` None -> ``defaults[kind]``; forwarded options the method does not take -> None
    (so a line for CLIP and VLM alike gives each run only its own options, and its own id)."""
    def resolve(p: dict, kind: str) -> dict:
        method = p["method"] or defaults[kind]
        return {**p, "method": method, **{k: None for ms in FORWARDED.values() for k in ms
                                          if k in p and k not in FORWARDED[method]}}
    return resolve


def _shape_bias(ctx: Ctx, p: dict) -> list:
    return _eval(p["method"], {k: "value" for k in _forwarded(p)})(ctx, p)


def _ood(ctx: Ctx, p: dict) -> list:
    return ["metrics", ctx.deps["id"], "--ood", ctx.deps["ood"], "--out", ctx.out]


def _shift(ctx: Ctx, p: dict) -> list:
    return ["compare", "--shift", f"{ctx.deps['id']}:{ctx.deps['shift']}", "--out", f"{ctx.out}/shift.json"]


def _factors(ctx: Ctx, p: dict) -> list:
    out = ["metrics", ctx.deps["run"], "--factors", p["source"]]
    return out + (["--factor-variant", p["variant"]] if p["variant"] else []) + ["--out", ctx.out]


def _retrieval(ctx: Ctx, p: dict) -> list:
    return ["retrieval", "--model", ctx.model, *ctx.load_args, *ctx.data_args, "--seed", str(ctx.seed),
            "--out", ctx.out, "--no-progress"]


def _open_world(ctx: Ctx, p: dict) -> list:
    out = ["metrics", ctx.deps["run"], "--open-world", "--out", ctx.out, "--no-plots"]
    return out + (["--text-encoder", ctx.models[p["text_encoder"]]] if p["text_encoder"] else [])


def _audit(ctx: Ctx, p: dict) -> list:
    return ["audit", ctx.deps["run"], "--n", str(p["n"]), "--seed", str(ctx.seed), "--out", ctx.out, "--no-progress"]


# issue 33: random vs CLIP-mined (hard) distractors for the sampled label space of generate / likelihood
CANDIDATE_OPTIONS = {
    "candidates": Option("random", (str,), axis=True, choices=("random", "hard"),
                         help="with num_candidates N: random distractors, or hard = the N-1 classes the "
                              "hard_reference CLIP's zero-shot run scores highest on each image"),
    "hard_reference": Option(None, (str,), in_id=False,
                             help="with candidates: hard, the CLIP model name whose zeroshot run mines the distractors")}


def _hard_deps(p: dict) -> dict:
    """candidates: hard -> the reference CLIP's zeroshot run on the same dataset (another model)."""
    if p.get("candidates") != "hard":
        return {}
    return {"hard": ("zeroshot", {}, None, p["hard_reference"] or "<hard_reference not given>")}


def _with_candidates(argv: Callable[[Ctx, dict], list]) -> Callable[[Ctx, dict], list]:
    def wrapped(ctx: Ctx, p: dict) -> list:
        out = argv(ctx, p)
        return out + (["--candidates", f"hard:{ctx.deps['hard']}"] if p.get("candidates") == "hard" else [])
    return wrapped


TEMPLATES_FWD = Option(None, (str,), help="zeroshot runs: template set (default: vlmprobe eval's)")
ANSWER_PREFIX_FWD = Option(None, (str,), help="likelihood runs: answer prefix (paper = 'The photo features a')")

NUM_CANDIDATES = Option(None, (int, str), axis=True,
                        help="label-space size: 2, 5, 20, 100 or all (true class + seeded others)")

MEASURES: dict[str, Measure] = {m.name: m for m in [
    Measure("zeroshot", (CLIP,), {
        "templates": Option("single", (str,), axis=True, help="single | imagenet | a JSON template file"),
        "cpe_templates": Option(None, (str,), axis=True,
                                help="evaluate the CPE ensemble built from this template pool (a cpe run)")},
        _zeroshot, section="main", shards=True,
        deps=lambda p: {} if p["cpe_templates"] is None else {"ensemble": ("cpe", {"templates": p["cpe_templates"]})},
        help="CLIP zero-shot: scaled cosine to template-averaged class-name embeddings (or a CPE ensemble)"),
    Measure("cpe", (CLIP,), {
        "templates": Option("imagenet", (str,), axis=True, help="template pool (vlmprobe cpe --templates)"),
        "k": Option(10, (int,)), "top_m": Option(20, (int,)), "temperature": Option(1.0, (float, int)),
        "descriptions": Option(None, (str,), help="JSON {class: [description]} or toy:digit-facts"),
        "description_format": Option(None, (str,), help="enriched prompt with {c} and {d}")},
        _cpe, section="cpe", result_file="report.json",
        help="CPE: CMM-weighted, description-enriched prompt ensemble for CLIP's worst classes (no labels)"),
    Measure("generate", (VLM,), {
        "prompt": Option("default", (str,), axis=True, help="prompt name or file (vlmprobe eval --prompt)"),
        "closed_world": Option(False, (bool,), axis=True, help="append the shuffled class list"),
        "num_candidates": NUM_CANDIDATES,
        "cot": Option(False, (bool,), axis=True, help="chain of thought"),
        "match": Option("substring", (str,), choices=("substring", "word", "first")),
        **CANDIDATE_OPTIONS},
        _with_candidates(_eval("generate", {"prompt": "value", "closed_world": "bool", "num_candidates": "value",
                                            "cot": "bool", "match": "value"})), section="main", shards=True,
        deps=_hard_deps, help="VLM direct generation, answer matched to class names"),
    Measure("likelihood", (VLM,), {
        "reduction": Option("sum", (str,), axis=True, choices=("sum", "mean", "first", "char", "pmi")),
        "answer_prefix": Option(None, (str,), axis=True, help="paper = 'The photo features a'"),
        "num_candidates": NUM_CANDIDATES,
        "scoring": Option("fast", (str,), choices=("fast", "naive")),
        **CANDIDATE_OPTIONS},
        _with_candidates(_eval("likelihood", {"reduction": "value", "answer_prefix": "value", "num_candidates": "value",
                                              "scoring": "value"})), section="main", shards=True,
        deps=_hard_deps, help="VLM probability inference: log p(class name | image, prompt)"),
    Measure("probe", (VLM, CLIP), {
        "train": Option(None, (str,), in_id=False, help="dataset name of the training images (required)"),
        "val": Option(None, (str,), in_id=False, help="dataset name of the validation images (default: carved from train)"),
        "layers": Option("all", (str, int)),
        "pool": Option("last,image-mean,mean", (str,)),
        "reference": Option(None, (str,), in_id=False, help="a CLIP model name: its probe and zero-shot as reference lines")},
        _probe, section="probe", shards=True, help="linear probes on every layer, selected on validation"),
    Measure("wikiqa", (VLM,), {
        "data": Option(None, (str,), in_id=False, help="ImageWikiQA JSONL (required)"),
        "images": Option(None, (str,), in_id=False, help="image root (required unless every condition has no_image)"),
        "method": Option("generate", (str,), axis=True, choices=("generate", "likelihood")),
        "condition": Option("image", (str,), axis=True,
                            choices=("image", "no_image", "oracle_class", "oracle_class+no_image")),
        "classification": Option("generate", (str,), choices=("generate", "likelihood", "none"),
                                 help="split the image condition by this run's classification outcome "
                                      "(same model, on the entry's dataset with default options)")},
        _wikiqa, section="wikiqa", shards=True,
        deps=lambda p: ({} if p["classification"] == "none" else {"classification": (p["classification"], {})}),
        help="ImageWikiQA: knowledge questions that need the image's class"),
    Measure("frequency", (VLM,), {
        "corpus": Option(None, (str,), in_id=False, help="LLaVA-style instruction corpus JSON (required)"),
        "roles": Option("gpt", (str,)),
        "run": Option("generate", (str,), choices=("generate", "likelihood"), help="whose per-class accuracy")},
        _frequency, section="frequency", result_file="frequency.json",
        deps=lambda p: {"run": (p["run"], {})}, help="class-name frequency vs per-class accuracy"),
    Measure("classifier", (CLASSIFIER,), {}, _eval("classifier", {}), section="main", shards=True,
            help="a supervised network's own logits (timm/torchvision; the toy world's toy:cnn)"),
    Measure("ood", (CLIP, VLM), {
        "ood": Option(None, (str,), help="dataset name of the out-of-distribution images (unlabeled: true; required)"),
        "method": Option(None, (str,), choices=(None, "zeroshot", "likelihood"),
                         help="the scores compared (default: zeroshot for a clip, likelihood for a vlm)"),
        "templates": TEMPLATES_FWD, "answer_prefix": ANSWER_PREFIX_FWD},
        _ood, section="ood", resolve=_method_by_kind({CLIP: "zeroshot", VLM: "likelihood"}),
        deps=lambda p: {"id": (p["method"], _forwarded(p)), "ood": (p["method"], _forwarded(p), p["ood"])},
        help="OOD detection: the method on the entry's (ID) dataset and on the OOD dataset, then "
             "`vlmprobe metrics ID --ood OOD` (MSP/MCM AUROC, FPR@95TPR, roc.png)"),
    Measure("shape_bias", (CLIP, VLM, CLASSIFIER), {
        "method": Option(None, (str,), choices=(None, "zeroshot", "generate", "likelihood", "classifier"),
                         help="default: zeroshot for a clip, generate for a vlm, classifier for a classifier"),
        "templates": TEMPLATES_FWD, "answer_prefix": ANSWER_PREFIX_FWD},
        _shape_bias, section="shape-bias", shards=True,
        resolve=_method_by_kind({CLIP: "zeroshot", VLM: "generate", CLASSIFIER: "classifier"}),
        help="shape bias on a cue-conflict dataset: shape / (shape + texture) decisions (Geirhos et al.)"),
    Measure("factors", (CLIP, VLM, CLASSIFIER), {
        "source": Option(None, (str,), help="imagenet-x (the imagenet-x package's annotations) or an ImageNet-X "
                                            "style FILE.jsonl (required)"),
        "variant": Option(None, (str,), choices=(None, "top", "multi", "file"),
                          help="which annotation: top | multi (imagenet-x) or file (default: top for imagenet-x)"),
        "method": Option(None, (str,), choices=(None, "zeroshot", "generate", "likelihood", "classifier"),
                         help="whose predictions (default: zeroshot for a clip, generate for a vlm, classifier "
                              "for a classifier)"),
        "templates": TEMPLATES_FWD, "answer_prefix": ANSWER_PREFIX_FWD},
        _factors, section="factors",
        resolve=_method_by_kind({CLIP: "zeroshot", VLM: "generate", CLASSIFIER: "classifier"}),
        deps=lambda p: {"run": (p["method"], _forwarded(p))},
        help="ImageNet-X factors: `vlmprobe metrics RUN --factors SOURCE` on the method's run (per-factor "
             "accuracy and error ratio = (1 - factor acc) / (1 - overall acc), Idrissi et al. 2023)"),
    Measure("shift", (CLIP, VLM, CLASSIFIER), {
        "shift": Option(None, (str,), axis=True, help="dataset name of the shifted images (required)"),
        "method": Option(None, (str,), axis=True, choices=(None, "zeroshot", "generate", "likelihood", "classifier"),
                         help="default: zeroshot for a clip, likelihood for a vlm, classifier for a classifier"),
        "templates": TEMPLATES_FWD, "answer_prefix": ANSWER_PREFIX_FWD},
        _shift, section="shift", result_file="shift.json",
        resolve=_method_by_kind({CLIP: "zeroshot", VLM: "likelihood", CLASSIFIER: "classifier"}),
        deps=lambda p: {"id": (p["method"], _forwarded(p)), "shift": (p["method"], _forwarded(p), p["shift"])},
        help="distribution shift: the method on the entry's (ID) dataset and on the shifted dataset; "
             "`vlmprobe compare --shift ID:SHIFT` (accuracies with intervals; the report's effective-robustness figure)"),
    Measure("retrieval", (CLIP, VLM), {}, _retrieval, section="retrieval", shards=True,
            help="zero-shot image<->text retrieval Recall@K on a captions dataset (vlmprobe retrieval)"),
    Measure("open_world", (VLM,), {
        "text_encoder": Option(None, (str,), in_id=False,
                               help="a CLIP model name of the study: its text tower gives the semantic-similarity "
                                    "prediction (default: no semantic criterion)"),
        "prompt": Option("default", (str,), help="whose open-world generation run (its prompt)")},
        _open_world, section="open-world", deps=lambda p: {"run": ("generate", {"prompt": p["prompt"]})},
        help="open-world scoring of the generation run's stored answers: `vlmprobe metrics RUN --open-world` "
             "(inclusion, synonym, hypernym / hyponym, semantic similarity, unmatched rates)"),
    Measure("audit", (VLM,), {
        "method": Option("likelihood", (str,), axis=True, choices=("generate", "likelihood"),
                         help="whose run is audited: closed-world generation or likelihood"),
        "num_candidates": Option(5, (int,), help="the audited run's label-space size"),
        "answer_prefix": ANSWER_PREFIX_FWD,
        "n": Option(32, (int,), help="samples re-run per knob")},
        _audit, section="audit", result_file="audit.json",
        resolve=lambda p, kind: {**p, "answer_prefix": None} if p["method"] == "generate" else p,
        deps=lambda p: {"run": (p["method"], {"num_candidates": p["num_candidates"], **(
            {"closed_world": True} if p["method"] == "generate" else
            ({"answer_prefix": p["answer_prefix"]} if p["answer_prefix"] else {}))})},
        help="order / batch audit: `vlmprobe audit RUN` (batch size 1, shuffled order, permuted candidates; "
             "flips and the largest score difference)"),
]}
