"""Argument groups shared by subcommands: how to load a model, how to load a dataset."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help unless the help already states its default or
    the default is empty (None/False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text.lower() or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


# flag (dest) -> its allowed values; the study schema checks model entries against the same table
LOAD_CHOICES = {"dtype": ("default", "float32", "float16", "bfloat16", "auto")}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size``, ``--limit``): rejected before anything loads."""
    return _int_at_least(text, 1, "a positive integer")


def count(text: str) -> int:
    """argparse type: an integer >= 0 (``--workers``)."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True, api: bool = False) -> None:
    """The model group; ``api``: also the ``openai:`` model flags (``models.api.add_api_arguments``)."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", required=required, metavar="SPEC",
                   help="openclip:ARCH@PRETRAINED | openclip:local-dir:PATH | hfclip:ID_OR_PATH | hf:ID_OR_PATH"
                        "[+adapter:PATH] | timm:NAME[@random] | timm:local-dir:PATH | torchvision:NAME[@WEIGHTS|@random] | "
                        "toy:clip | "
                        "toy:vlm | " + ("openai:MODEL[@URL] | " if api else "") + "a local model directory")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu); under accelerate launch / torchrun, "
                        "cuda means cuda:LOCAL_RANK")
    g.add_argument("--dtype", default="default", choices=LOAD_CHOICES["dtype"],
                   help="weight dtype; default: bfloat16 on CUDA, float32 on CPU")
    g.add_argument("--device-map", default=None, help="transformers device_map, e.g. auto (multi-GPU)")
    g.add_argument("--load-in-4bit", action="store_true", help="bitsandbytes NF4 4-bit weights (VLMs)")
    g.add_argument("--load-in-8bit", action="store_true", help="bitsandbytes 8-bit weights (VLMs)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    if api:
        from ..models.api import add_api_arguments

        add_api_arguments(parser)


def model_from_args(args, spec: str | None = None):
    from ..distributed import rank_device, world
    from ..errors import VlmprobeError
    from ..models import LoadOptions, load_model

    w = world()
    if w.sharded and args.device_map:
        raise VlmprobeError("--device-map spreads ONE model over the GPUs of one process; with several launched "
                            "processes each loads its own copy on cuda:LOCAL_RANK (use --device cuda)")
    options = LoadOptions(device=rank_device(args.device, w), dtype=args.dtype, device_map=args.device_map,
                          load_in_4bit=args.load_in_4bit, load_in_8bit=args.load_in_8bit,
                          trust_remote_code=args.trust_remote_code)
    name = spec or args.model
    if hasattr(args, "api_base") and not _api_spec(name):  # refused before a local model is loaded
        from ..models.api import api_flags_given

        given = api_flags_given(args)
        if given:
            raise VlmprobeError(f"{' '.join(given)}: API model flags (openai:MODEL[@URL], sglang:MODEL@URL); "
                                f"{name} is computed in this process (drop the flag{'s' if len(given) > 1 else ''})")
    model = load_model(name, options)
    if getattr(model, "kind", None) == "api":
        from ..models.api import api_options_from_args

        if not hasattr(args, "api_base"):
            raise VlmprobeError(f"{model.spec}: API models work with vlmprobe eval --method generate and "
                                "vlmprobe wikiqa only")
        model.configure(api_options_from_args(args))
    return model


def _api_spec(spec: str) -> bool:
    """Whether ``spec`` names a server-answered model (its registry entry loads one)."""
    from ..models.registry import MODEL_SPECS, resolve_alias

    entry = MODEL_SPECS.find(resolve_alias(spec))
    return entry is not None and entry.prefix in ("openai:", "sglang:")


def finish_api(model, results: dict) -> None:
    """After an API run: print its spending (``report_api``); when samples are still unanswered
    (``api_error`` after their retries), a one-line error, so the command exits non-zero
    (results.json, written already, says how many: ``api.unanswered``)."""
    from ..errors import VlmprobeError

    report_api(model, results)
    n = ((results or {}).get("api") or {}).get("unanswered") or 0
    if n:
        raise VlmprobeError(f"{n} sample{'s' if n != 1 else ''} unanswered; run the same command again to retry")


def report_api(model, results: dict) -> None:
    """Print an API model's spending of this invocation (or the ``--dry-run`` estimate)."""
    if getattr(model, "kind", None) != "api":
        return
    s = model.spending()
    if s.get("dry_run"):
        cost = s["estimated_cost_usd_max"]
        print(f"dry run: {s['requests']} requests for {results.get('samples_to_compute')} samples; about "
              f"{s['estimated_prompt_tokens']} prompt tokens and at most {s['estimated_completion_tokens_max']} "
              "completion tokens" + (f"; estimated cost at most {cost:.4f} USD" if cost is not None
                                     else " (give --price-input/--price-output for a cost)") + "; nothing was sent")
        return
    cost = f", {s['cost_usd']:.4f} USD" if s["cost_usd"] is not None else ""
    errors = f"; failed attempts (retried): {s['errors']}" if s["errors"] else ""
    shared = f", {s['deduplicated']} identical requests answered once" if s["deduplicated"] else ""
    print(f"api: {s['requests_sent']} requests sent in {s['attempts']} attempts, {s['replayed_from_journal']} answers "
          f"replayed from the journal{shared}, {s['prompt_tokens']} prompt + {s['completion_tokens']} completion "
          f"tokens{cost}{errors}")


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data", required=required, metavar="SPEC",
                   help="ImageFolder DIR (WordNet-id folders map to ImageNet classes) | manifest FILE.jsonl "
                        "({image,label,split}) | VAL_DIR+labels:GROUND_TRUTH | wds:SHARDS | hf:NAME_OR_PATH | "
                        "hfds:PATH | toy:digits[:SPLIT]")
    g.add_argument("--split", default=None, help="split to use (manifest 'split' field, sub-folder, DatasetDict key)")
    g.add_argument("--limit", type=positive_int, default=None, help="evaluate a seeded random subset of N images")
    g.add_argument("--seed", type=int, default=0, help="seed for --limit and every per-sample random choice")
    g.add_argument("--classes", default=None, metavar="FILE|imagenet",
                   help="class names: a JSON list file, or 'imagenet' (open_clip's ImageNet-1k names); "
                        "default: the dataset's own labels")
    g.add_argument("--duplicate-names", default="merge", choices=["merge", "keep", "error"],
                   help="identical class names (ImageNet has 2 pairs): merge into one class (default), "
                        "keep as separate columns (ties go to the first), or error")
    g.add_argument("--image-root", default=None, help="resolve manifest image paths under this directory")
    g.add_argument("--unlabeled", action="store_true",
                   help="images without classes (e.g. an OOD set for `vlmprobe metrics --ood`), scored against "
                        "--classes; labels and folder names are ignored")
    g.add_argument("--corruption", default=None, metavar="NAME[,NAME]",
                   help="imagenet-c:/imagenet-3dcc: keep these corruptions (default all)")
    g.add_argument("--severity", default=None, metavar="S[,S]",
                   help="imagenet-c:/imagenet-3dcc: keep these severities 1..5 (default all)")
    g.add_argument("--corrupt", default=None, metavar="NAME:SEVERITY",
                   help="corrupt every image on the fly (ImageNet-C corruptions via imagecorruptions, after "
                        "Resize 256 + CenterCrop 224, seeded per sample id), e.g. gaussian_noise:3")


def dataset_from_args(args, spec: str | None = None, split: str | None = None):
    from ..data import load_dataset

    return load_dataset(spec or args.data, split=split if split is not None else args.split, limit=args.limit,
                        seed=args.seed, classes=args.classes, duplicate_names=args.duplicate_names,
                        image_root=args.image_root, unlabeled=getattr(args, "unlabeled", False),
                        corruption=getattr(args, "corruption", None), severity=getattr(args, "severity", None),
                        corrupt=getattr(args, "corrupt", None))


def group_pair(text: str) -> tuple[str, str]:
    """``--group-drop A,B`` -> (A, B); anything else is a one-line VlmprobeError."""
    from ..errors import VlmprobeError

    parts = tuple(x.strip() for x in text.split(","))
    if len(parts) != 2 or not all(parts):
        raise VlmprobeError(f"--group-drop {text!r}: expected two group values A,B of --groups FIELD")
    return parts
