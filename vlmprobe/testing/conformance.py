"""Conformance checks: the same named checks for every VLM family, and the support matrix.

A check is ``check(model_dir: str, family: Family) -> Outcome`` (``status``: pass | fail | skip,
``reason``: one line). ``CHECKS`` lists them in order; every family (``TINY_BUILDERS``, ours and
``families_special``'s) runs through all of them. Tolerance ``TOL`` = 1e-4 on float32 log-probs.

``load``        ``hf:DIR`` loads; the checkpoint ships a chat template (or its family defines
                a prompt format, as BLIP-2's); a family adapter (not ``generic``) claims it.
``generate``    greedy generation through the chat template returns one string per image, and
                the substring matcher (``classify.matching.match_response``) runs on each.
``naive``       ``score(..., scoring="naive", reduction="tokens")`` equals, token by token, the
                log-softmax read off ONE plain forward of ``render(q) + " " + name`` per (image,
                name) written here (positions ``P-1 .. T-2`` predict tokens ``P .. T-1``,
                ``P`` = the prompt's processor length), with and without the paper's answer
                prefix "The photo features a"; same argmax.
``fast``        where the family allows it, fast == naive (1e-4, both prefixes, batch 1 and 5,
                chunk 4; the tree or the state path, whichever the model needs); where it does not, the refusal is one line naming ``--scoring naive``
                (status skip, with that reason).
``features``    ``lm.0 .. lm.L`` x {last, image-mean, mean} are [N, D_text]; ``vision`` [N, D_v]
                and ``projector`` [N, D_text] where the family has a projector; all finite.
``batch``       batch size 1 vs 4 (images of different sizes, prompts of different lengths):
                generation identical, likelihood (fast where allowed) within 1e-4 with the same
                argmax, features within 1e-4.
``lora``        one LoRA step (language-model targets, projector trained in full) changes the
                loss; the saved adapter reloads through ``hf:BASE+adapter:PATH`` and scores
                the same (1e-4) as the in-memory adapted model.
``qlora``       the base loaded in 4-bit (bitsandbytes, on the CPU here), LoRA: one step changes
                the loss (skip without bitsandbytes).
"""
from __future__ import annotations

import json
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

TOL = 1e-4
QUESTION = "What type of object is in this photo?"
ANSWER_PREFIX = "The photo features a"
NAMES = ["cat", "dog", "tiger shark", "zero", "airliner"]
SIZES = [(32, 32), (48, 32), (32, 64), (40, 40)]  # (w, h): different token counts / AnyRes views


@dataclass
class Outcome:
    status: str  # pass | fail | skip
    reason: str = ""
    seconds: float = 0.0


class Skip(Exception):
    """Raised by a check: not applicable here (the message is the one-line reason)."""


def images(n: int = 4, seed: int = 0) -> list:
    """``n`` seeded random RGB images of the sizes in ``SIZES`` (cycled)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (SIZES[i % len(SIZES)][1], SIZES[i % len(SIZES)][0], 3),
                                         dtype=np.uint8)) for i in range(n)]


@lru_cache(maxsize=2)
def load(model_dir: str):
    """``hf:<model_dir>`` through the public loader (cached: checks share one load)."""
    import vlmprobe

    return vlmprobe.load_model(f"hf:{model_dir}")


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if not torch.equal(a.isnan(), b.isnan()):
        raise AssertionError(f"{what}: different NaN patterns")
    diff = (a - b).nan_to_num().abs().max().item() if a.numel() else 0.0
    if diff > TOL:
        raise AssertionError(f"{what}: max abs difference {diff:.2e} > {TOL}")


def check_load(model_dir: str, family) -> None:
    vlm = load(model_dir)
    if not getattr(vlm.processor, "chat_template", None) and getattr(vlm.family, "prompt_format", None) is None:
        raise AssertionError("no chat template and no family prompt format")
    if vlm.family.name == "generic":
        raise AssertionError(f"model type {vlm.model.config.model_type!r} has no family adapter")


def check_generate(model_dir: str, family) -> None:
    from ..classify.matching import match_response

    vlm = load(model_dir)
    out = vlm.generate(images(2), [QUESTION] * 2, max_new_tokens=6)
    if len(out) != 2 or not all(isinstance(t, str) for t in out):
        raise AssertionError(f"generation returned {out!r}")
    for text in out:
        match_response(text, NAMES)


@torch.no_grad()
def plain_logprobs(vlm, image, prefix: str, name: str) -> torch.Tensor:
    """Reference: log p of the name's tokens from one plain forward of ``prefix + " " + name``
    (the prompt's tokens are those of ``prefix`` alone). Where the family declares them,
    ``prompt_inputs`` are taken from the prompt alone and ``suffix_inputs`` set on the name's
    tokens (the family's stated semantics, applied here independently of the engine)."""
    if getattr(vlm.model.config, "is_encoder_decoder", False):  # decoder log p(tok(name) | encoder(image, prefix))
        labels = torch.tensor([vlm.tokenizer(name, add_special_tokens=False)["input_ids"]], device=vlm.device)
        logp = vlm.model(**vlm.encode([image], [prefix]), labels=labels).logits[0].float().log_softmax(-1)
        return logp.gather(1, labels[0][:, None])[:, 0].cpu()
    text = prefix + ("" if prefix.endswith((" ", "\n")) else " ") + name
    alone = vlm.encode([image], [prefix])
    P = alone["input_ids"].shape[1]
    batch = vlm.encode([image], [text])
    for key in getattr(vlm.family, "prompt_inputs", ()):  # inputs that describe the prompt alone (InstructBLIP)
        batch[key] = alone[key]
    for key, value in getattr(vlm.family, "suffix_inputs", ()):  # answer-token inputs (PaliGemma: causal, 1)
        batch[key] = batch[key].clone()
        batch[key][:, P:] = value
    logp = vlm.model(**batch).logits[0].float().log_softmax(-1)
    ids = batch["input_ids"][0]
    return torch.stack([logp[t - 1, ids[t]] for t in range(P, len(ids))]).cpu()


def check_naive(model_dir: str, family) -> None:
    vlm = load(model_dir)
    imgs = images(2)
    for ap in (None, ANSWER_PREFIX):
        tokens = vlm.score(imgs, NAMES, answer_prefix=ap, reduction="tokens", scoring="naive")
        prefix = vlm.render(QUESTION, answer_prefix=ap)
        manual = torch.zeros(len(imgs), len(NAMES))
        for b, img in enumerate(imgs):
            for k, name in enumerate(NAMES):
                ref = plain_logprobs(vlm, img, prefix, name)
                got = tokens[b, k][~tokens[b, k].isnan()]
                if got.shape != ref.shape:
                    raise AssertionError(f"{name!r}: {got.numel()} scored tokens, the plain forward has {ref.numel()}")
                _close(got, ref, f"naive vs plain forward ({name!r}, answer prefix {ap!r})")
                manual[b, k] = ref.sum()
        sums = tokens.nansum(-1)
        if not torch.equal(sums.argmax(1), manual.argmax(1)):
            raise AssertionError("naive and plain forward disagree on the argmax")


def fast_refusal(vlm) -> str | None:
    """None when the fast path is allowed, else its one-line refusal (checked to name
    ``--scoring naive``)."""
    from ..errors import VlmprobeError

    try:
        vlm.check_scoring("fast")
    except VlmprobeError as err:
        msg = str(err)
        if "\n" in msg or "--scoring naive" not in msg:
            raise AssertionError(f"the fast-path refusal is not one line naming --scoring naive: {msg!r}")
        return msg
    return None


def check_fast(model_dir: str, family) -> None:
    vlm = load(model_dir)
    refusal = fast_refusal(vlm)
    if refusal:
        raise Skip(refusal)
    imgs = images(5)
    for ap in (None, ANSWER_PREFIX):
        naive = vlm.score(imgs, NAMES, answer_prefix=ap, reduction="tokens", scoring="naive")
        for bs in (1, 5):
            fast = vlm.score(imgs, NAMES, answer_prefix=ap, reduction="tokens", batch_size=bs, chunk_size=4)
            _close(fast, naive, f"fast vs naive (answer prefix {ap!r}, batch {bs})")


def check_features(model_dir: str, family) -> None:
    vlm = load(model_dir)
    imgs = images(3)
    n = vlm.num_layers()
    cfg = vlm.model.config
    text = cfg.get_text_config(decoder=True)
    has_projector = vlm.family.find_module(vlm.model, "projector", required=False) is not None
    feats = vlm.features(imgs, layers="all", pooling="last,image-mean,mean")
    want = {f"lm.{i}:{p}" for i in range(n + 1) for p in ("last", "image-mean", "mean")}
    want |= {"vision", "projector"} if has_projector else set()
    if set(feats) != want:
        raise AssertionError(f"feature keys {sorted(set(feats) ^ want)} differ from the documented ones")
    for name, x in feats.items():
        d = x.shape[1] if x.dim() == 2 else None
        if x.dim() != 2 or x.shape[0] != len(imgs) or not torch.isfinite(x).all():
            raise AssertionError(f"{name}: shape {tuple(x.shape)} (want [{len(imgs)}, D], finite)")
        # hyper-connections (Qwen4-Exp, GLM-5-Next): a layer's hidden state holds the hc_count (hc_mult) residual streams side by
        # side; the last one (after the final norm) is collapsed to hidden_size
        widths = {text.hidden_size, text.hidden_size * (getattr(text, "hc_count", None) or getattr(text, "hc_mult", None) or 1) if name.startswith("lm.")
                  else text.hidden_size}
        if name != "vision" and d not in widths:
            raise AssertionError(f"{name}: width {d}, the language model's is {' or '.join(map(str, sorted(widths)))}")


def check_batch(model_dir: str, family) -> None:
    vlm = load(model_dir)
    imgs = images(4)
    questions = [QUESTION, "Describe it.", "What is it?", "Name the object in the picture, please."]
    together = vlm.generate(imgs, questions, max_new_tokens=5)
    alone = [vlm.generate([im], [q], max_new_tokens=5)[0] for im, q in zip(imgs, questions)]
    if together != alone:
        raise AssertionError(f"generation batch 4 {together!r} != batch 1 {alone!r}")
    scoring = "naive" if fast_refusal(vlm) else "fast"
    four = vlm.score(imgs, NAMES, answer_prefix=ANSWER_PREFIX, scoring=scoring, batch_size=4)
    one = vlm.score(imgs, NAMES, answer_prefix=ANSWER_PREFIX, scoring=scoring, batch_size=1)
    _close(four, one, f"{scoring} likelihood batch 4 vs 1")
    if not torch.equal(four.argmax(1), one.argmax(1)):
        raise AssertionError("likelihood predictions change with the batch size")
    f4 = vlm.features(imgs, layers=[-1, 1], pooling="last,image-mean")
    for i, im in enumerate(imgs):
        f1 = vlm.features([im], layers=[-1, 1], pooling="last,image-mean")
        for k in f1:
            _close(f1[k][0], f4[k][i], f"feature {k} batch 4 vs 1")


def _train_batch(vlm, imgs) -> dict:
    """A fine-tuning batch (``ChatCollator``): image + question -> a class name, per image."""
    from ..finetune.collate import ChatCollator
    from ..finetune.data import Conversation, ConversationDataset

    convs = [Conversation(str(i), [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
                                   {"role": "assistant", "content": [{"type": "text", "text": name}]}],
                          (lambda im=im: im)) for i, (im, name) in enumerate(zip(imgs, NAMES))]
    from ..models.likelihood import is_encoder_decoder

    collate = ChatCollator(vlm.processor, family=vlm.family, encoder_decoder=is_encoder_decoder(vlm.model))
    batch = collate(list(ConversationDataset(convs)))
    from ..models.vlm import cast_inputs

    return cast_inputs({k: v for k, v in batch.items() if k != "skipped"}, vlm.model)


def _one_step(model, batch: dict, lr: float) -> tuple[float, float]:
    """One SGD step on the trainable parameters: (loss before, loss after)."""
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss0 = model(**batch).loss
    loss0.backward()
    opt.step()
    opt.zero_grad()
    with torch.no_grad():
        loss1 = model(**batch).loss
    model.eval()
    if not torch.isfinite(loss1) or abs(loss1.item() - loss0.item()) < 1e-6:
        raise AssertionError(f"one step left the loss at {loss0.item():.6f} -> {loss1.item():.6f}")
    return loss0.item(), loss1.item()


def check_lora(model_dir: str, family) -> None:
    import copy

    import vlmprobe

    from ..finetune.config import AdapterArgs
    from ..finetune.lora import setup_vlm_training
    from ..models.vlm import VisionLanguageModel

    vlm = load(model_dir)
    imgs = images(2)
    torch.manual_seed(0)
    model = setup_vlm_training(copy.deepcopy(vlm.model), AdapterArgs(lora_r=4, lora_alpha=8, train_projector=True))
    _one_step(model, _train_batch(vlm, imgs), lr=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        adapted = VisionLanguageModel.from_parts(model, vlm.processor)
        ref = adapted.score(imgs, NAMES, answer_prefix=ANSWER_PREFIX, scoring="naive")
        reloaded = vlmprobe.load_model(f"hf:{model_dir}+adapter:{tmp}")
        got = reloaded.score(imgs, NAMES, answer_prefix=ANSWER_PREFIX, scoring="naive")
    _close(got, ref, "reloaded adapter vs in-memory adapted model")
    if (got - vlm.score(imgs, NAMES, answer_prefix=ANSWER_PREFIX, scoring="naive")).abs().max() < 1e-6:
        raise AssertionError("the reloaded adapter scores like the base model (adapter not applied)")


def check_qlora(model_dir: str, family) -> None:
    """The base loaded in 4-bit (bitsandbytes NF4; vision tower, projector and head kept in full
    precision), LoRA on the language model: one step changes the loss. Skipped where
    bitsandbytes is missing."""
    import importlib.util

    import vlmprobe

    from ..finetune.config import AdapterArgs
    from ..finetune.lora import setup_vlm_training

    if importlib.util.find_spec("bitsandbytes") is None:
        raise Skip("bitsandbytes is not installed")
    vlm = vlmprobe.load_model(f"hf:{model_dir}", load_in_4bit=True)
    if not any("4bit" in type(m).__name__ for m in vlm.model.modules()):
        raise AssertionError("load_in_4bit left no 4-bit layer")
    torch.manual_seed(0)
    model = setup_vlm_training(vlm.model, AdapterArgs(method="qlora", lora_r=4, lora_alpha=8))
    _one_step(model, _train_batch(vlm, images(2)), lr=0.5)


CHECKS: list[tuple[str, Callable]] = [("load", check_load), ("generate", check_generate), ("naive", check_naive),
                                      ("fast", check_fast), ("features", check_features), ("batch", check_batch),
                                      ("lora", check_lora), ("qlora", check_qlora)]


def run_check(name: str, model_dir: str, family) -> Outcome:
    """Run one named check; exceptions become a failing outcome with a one-line reason."""
    fn = dict(CHECKS)[name]
    start = time.perf_counter()
    try:
        fn(model_dir, family)
    except Skip as s:
        return Outcome("skip", str(s), round(time.perf_counter() - start, 2))
    except Exception as err:  # noqa: BLE001 (a failing check is a result, reported with its reason)
        last = traceback.extract_tb(err.__traceback__)[-1]
        msg = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        return Outcome("fail", f"{msg} ({Path(last.filename).name}:{last.lineno})", round(time.perf_counter() - start, 2))
    return Outcome("pass", "", round(time.perf_counter() - start, 2))


@dataclass
class FamilyResult:
    model_type: str
    family: str
    spec: str
    status: str  # pass | partial | unsupported
    checks: dict = field(default_factory=dict)  # check name -> Outcome as dict
    reason: str = ""


def check_family(root, model_type: str, checks=None, force: bool = False) -> FamilyResult:
    """Build ``root/<model_type>`` and run ``checks`` (names; default all) on it."""
    from ..models.families import family_for_type
    from .families import build_family

    fam = family_for_type(model_type)
    try:
        path = build_family(root, model_type, force=force)
    except Exception as err:  # noqa: BLE001
        return FamilyResult(model_type, fam.name, "", "unsupported",
                            reason=f"tiny build failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    fam = family_for_type(json.loads((Path(path) / "config.json").read_text()).get("model_type"))  # variants
    names = checks or [n for n, _ in CHECKS]
    res = {n: run_check(n, path, fam) for n in names}
    load.cache_clear()
    failed = [n for n, o in res.items() if o.status == "fail"]
    status = "pass" if not failed else ("unsupported" if "load" in failed else "partial")
    return FamilyResult(model_type, fam.name, f"hf:{path}", status, {n: asdict(o) for n, o in res.items()},
                        reason="; ".join(f"{n}: {res[n].reason}" for n in failed))


def image_text_to_text_types() -> list[str]:
    """Every model type transformers maps to ``AutoModelForImageTextToText``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return list(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def run_conformance(root, model_types=None, checks=None, others: bool = True, force: bool = False,
                    progress: bool = True) -> dict:
    """The support matrix: every registered family checked, every other image-text-to-text type
    probed (``vlmprobe.testing.generic.probe_type``); written as ``support_matrix.json`` and
    ``support_matrix.md`` into ``root``. Returns ``{"transformers", "checks", "families",
    "others"}``."""
    import transformers

    from .families import load_builders

    root = Path(root).expanduser()
    builders = load_builders()
    types = list(model_types) if model_types else sorted(builders)
    it = types
    if progress:
        from ..progress import bar as tqdm

        it = tqdm(types, desc="families", unit="family")
    fams = [asdict(check_family(root, t, checks=checks, force=force)) for t in it]
    rest = []
    if others:
        from .generic import probe_type

        rest = [probe_type(t) for t in image_text_to_text_types() if t not in builders]
    matrix = {"transformers": transformers.__version__, "date": time.strftime("%Y-%m-%d"),
              "checks": checks or [n for n, _ in CHECKS], "families": fams, "others": rest}
    root.mkdir(parents=True, exist_ok=True)
    (root / "support_matrix.json").write_text(json.dumps(matrix, indent=1) + "\n")
    (root / "support_matrix.md").write_text(matrix_markdown(matrix))
    return matrix


_MARK = {"pass": "yes", "fail": "**no**", "skip": "n/a"}
NOT_CHAT_HEADER = "Model types in the image-text-to-text mapping that are not chat VLMs:"


def status_counts(matrix: dict) -> dict:
    """Model types per status over the whole matrix: families checked (pass / partial /
    unsupported) and the other types probed (partial / unsupported / not-chat)."""
    counts: dict = {}
    for row in matrix["families"] + matrix["others"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def matrix_markdown(matrix: dict) -> str:
    """The support matrix as Markdown: a count per status, one row per family with a column per
    check (yes / **no** / n/a), the other chat image-text-to-text types with their status and
    reason, then the types that are not chat VLMs, each with why."""
    checks = matrix["checks"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status_counts(matrix).items()))
    date = f" on {matrix['date']}" if matrix.get("date") else ""
    lines = [f"Generated by `python -m vlmprobe.testing --families DIR`{date} (transformers {matrix['transformers']}): "
             f"{counts}.", "",
             "| model type | family | status | " + " | ".join(checks) + " |",
             "|---|---|---|" + "---|" * len(checks)]
    for f in matrix["families"]:
        cells = [_MARK[f["checks"][c]["status"]] if c in f["checks"] else "" for c in checks]
        lines.append(f"| `{f['model_type']}` | {f['family']} | {f['status']} | " + " | ".join(cells) + " |")
    notes = [(f["model_type"], c, f["checks"][c]["reason"]) for f in matrix["families"] for c in checks
             if c in f["checks"] and f["checks"][c]["status"] != "pass"]
    notes += [(f["model_type"], "build", f["reason"]) for f in matrix["families"] if not f["checks"]]
    if notes:
        lines += ["", "Notes:", ""] + [f"- `{t}` {c}: {r}" for t, c, r in notes]
    chat = [o for o in matrix["others"] if o["status"] != "not-chat"]
    if chat:
        lines += ["", "Other image-text-to-text model types:", "", "| model type | status | reason |", "|---|---|---|"]
        lines += [f"| `{o['model_type']}` | {o['status']} | {o['reason'].replace('|', '/')} |" for o in chat]
    other = [o for o in matrix["others"] if o["status"] == "not-chat"]
    if other:
        lines += ["", NOT_CHAT_HEADER, "",
                  "| model type | why not |", "|---|---|"]
        lines += [f"| `{o['model_type']}` | {o['reason'].replace('|', '/')} |" for o in other]
    return "\n".join(lines) + "\n"


def print_matrix(matrix: dict) -> None:
    print(matrix_markdown(matrix), end="")

README_BEGIN = "<!-- support-matrix:begin (generated: python -m vlmprobe.testing --families DIR --readme docs/models.md) -->"
README_END = "<!-- support-matrix:end -->"
_BEGIN_PREFIX = "<!-- support-matrix:begin"  # a begin marker with any comment text (older files name README.md)


def _split_markers(text: str):
    """(head, begin marker as written, body, tail) of a Markdown text with support-matrix markers, or None."""
    start = text.find(_BEGIN_PREFIX)
    if start < 0:
        return None
    close = text.find("-->", start)
    end = text.find(README_END, close)
    if close < 0 or end < 0:
        return None
    begin = text[start:close + 3]
    return text[:start], begin, text[close + 3:end], text[end + len(README_END):]


def update_readme(path, matrix: dict) -> None:
    """Replace the text between the support-matrix markers (``README_BEGIN`` ... ``README_END``)
    of the Markdown file ``path`` with ``matrix_markdown(matrix)``. The models page of the
    documentation (``docs/models.md``) holds the project's table: it is this output, never
    hand-written; any Markdown file with the markers works."""
    from ..errors import VlmprobeError

    path = Path(path)
    parts = _split_markers(path.read_text())
    if parts is None:
        raise VlmprobeError(f"{path}: no support-matrix markers ({README_BEGIN} ... {README_END})")
    head, begin, _, tail = parts
    path.write_text(f"{head}{begin}\n{matrix_markdown(matrix)}{README_END}{tail}")


def family_rows(markdown: str) -> list[str]:
    """The per-family rows of a support-matrix Markdown text (to compare the docs' table and output)."""
    parts = _split_markers(markdown)
    if parts is not None:
        markdown = parts[2]
    table = markdown.split("Other image-text-to-text model types:")[0].split(NOT_CHAT_HEADER)[0]
    return [line for line in table.splitlines() if line.startswith("| `")]


def matrix_document(root) -> Path:
    """The Markdown file of the repository at ``root`` holding the generated support matrix:
    ``README.md`` or any ``docs/*.md`` with the support-matrix markers (the README may move
    into docs/)."""
    from ..errors import VlmprobeError

    root = Path(root)
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        if path.is_file() and _split_markers(path.read_text(encoding="utf-8")) is not None:
            return path
    raise VlmprobeError(f"no README.md or docs/*.md under {root} holds the support-matrix markers ({README_BEGIN})")


def documented_matrix(markdown: str) -> dict:
    """What a generated support-matrix block states, read back from its Markdown:
    ``{"families": {model_type: family}, "others": {model_type: status}}``."""
    parts = _split_markers(markdown)
    block = markdown if parts is None else parts[2]

    def rows(text: str) -> list[list[str]]:
        return [[c.strip().strip("`") for c in line.strip("|").split("|")] for line in text.splitlines()
                if line.startswith("| `")]

    head, _, rest = block.partition("Other image-text-to-text model types:")
    head, _, tail = head.partition(NOT_CHAT_HEADER)  # no "Other" section: the not-chat one follows the families
    chat, _, not_chat = rest.partition(NOT_CHAT_HEADER)
    not_chat = not_chat or tail
    return {"families": {r[0]: r[1] for r in rows(head)},
            "others": {**{r[0]: r[1] for r in rows(chat)}, **{r[0]: "not-chat" for r in rows(not_chat)}}}
