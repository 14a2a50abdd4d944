"""Exact log-probabilities of continuations (class names, answer options) given an image and a
prompt, computed two ways that must agree: ``naive`` (the reference) and ``fast``.

Tokens (one definition for both paths)
--------------------------------------
For a rendered prefix ``p`` (a full chat-template string, e.g. ``vlm.render(question)``) and a
continuation ``c``, let ``P = tok(p)`` and ``F = tok(p + sep + c)`` (tokenizer ids, ``<image>``
not yet expanded; ``sep`` is ``" "`` unless ``p`` ends in whitespace, or the ``separator`` given).
With ``n`` the length of the longest common prefix of ``P`` and ``F``, the scored tokens are
``F[n:]`` (plus the EOS id with ``include_eos``), conditioned on the image and ``F[:n]``::

    logp(c) = sum_{t >= n} log p(F_t | image, F_<t)

Normally ``n == len(P)``. When the tokenizer merges text across the boundary (e.g. a prefix
ending in a space under a byte-level BPE), ``n < len(P)`` and the re-tokenized boundary tokens
are context, not score. So the score is always that of the text ``p + sep + c`` as the model would
read it, and a plain forward of ``F`` reproduces it.

Reductions of the scored log-probs ``l_1..l_m``: ``sum`` (log-likelihood), ``mean`` (sum / m),
``first`` (``l_1``), ``tokens`` (all of them, ``[N, K, max m]`` padded with NaN).

Paths
-----
``naive``: one plain forward of the whole sequence (image included) per (image, candidate).

``fast``: per batch of images, one forward of the image + prefix with the KV cache (right padded);
the first scored token of every candidate reads its log-prob from the prefix's last position.
All candidates of an image are merged into a token trie (a token shared by several candidates
after the same context is computed once) whose nodes are numbered in depth-first pre-order.
Node ranges of at most ``chunk_size`` nodes (plus the range's ancestors, recomputed, not
scored) go through the language model in one forward against a read-only cache of the
prefix's key/value tensors (its ``update`` returns prefix + new states and stores nothing, so no
cache object changes between chunks), with an explicit additive 4-D mask (a node sees the image's real prefix tokens and
its own ancestors and itself) and explicit position ids (``prefix length + depth``). Log-probs are
gathered with one indexing operation per chunk. Requires a language model that takes custom 4-D
masks (eager or sdpa attention) with 1-D rotary positions: LLaVA-1.5 and LLaVA-NeXT; anything else
raises ``VlmprobeError`` (use ``scoring="naive"``).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from ..errors import VlmprobeError
from .base import PAPER_QUESTION

DEFAULT_QUESTION = PAPER_QUESTION
REDUCTIONS = ("sum", "mean", "first", "tokens")
SCORINGS = ("fast", "naive")
# Top-level model types whose forward was checked against the naive path (tests/test_likelihood.py).
FAST_MODEL_TYPES = ("llava", "llava_next")
# Language models with plain 1-D rotary positions that accept a custom additive 4-D mask.
FAST_TEXT_MODEL_TYPES = ("llama", "mistral", "qwen2")
FAST_ATTENTION = ("eager", "sdpa")


# ----------------------------------------------------------------------------------- tokens
@dataclass
class Request:
    """One prefix and its continuations, tokenized.

    ``prefix_ids``: ``tok(p)``; ``shared``: how many of them every continuation conditions on
    (``min_c n_c``); ``seqs[c]``: ``F_c[shared:]`` (+ EOS); ``start[c]``: index into ``seqs[c]`` of
    the first scored token (``n_c - shared``)."""

    prefix_ids: list[int]
    shared: int
    seqs: list[tuple[int, ...]]
    start: list[int]


def _separator(prefix: str, separator: str | None) -> str:
    if separator is not None:
        return separator
    return "" if (not prefix or prefix[-1].isspace()) else " "


def tokenize_continuations(tokenizer, prefix: str, continuations: Sequence[str], separator: str | None = None,
                           include_eos: bool = False) -> Request:
    """Apply the module's token definition to one prefix and its continuations."""
    sep = _separator(prefix, separator)
    for c in continuations:
        if not isinstance(c, str) or not c.strip():
            raise VlmprobeError(f"continuation {c!r} is empty (empty candidate / class name?)")
    prefix_ids = tokenizer(prefix).input_ids
    fulls = tokenizer([prefix + sep + c for c in continuations]).input_ids if continuations else []
    eos = tokenizer.eos_token_id
    if include_eos and eos is None:
        raise VlmprobeError("include_eos: the tokenizer has no eos_token_id")
    ns = []
    for c, full in zip(continuations, fulls):
        n = 0
        limit = min(len(prefix_ids), len(full))
        while n < limit and prefix_ids[n] == full[n]:
            n += 1
        if n == len(full) and not include_eos:
            raise VlmprobeError(f"continuation {c!r} adds no token after the prefix")
        ns.append(n)
    shared = min(ns) if ns else len(prefix_ids)
    seqs = [tuple(full[shared:]) + ((eos,) if include_eos else ()) for full in fulls]
    return Request(prefix_ids, shared, seqs, [n - shared for n in ns])


# ------------------------------------------------------------------------------------- trie
@dataclass
class Trie:
    """Candidates' token sequences merged into a prefix tree, nodes in depth-first pre-order.

    ``token/parent/depth``: int64 [T] (parent -1: child of the prefix); ``paths``: [K, L] node of
    each candidate's t-th token (-1 past its end); ``scored``: bool [K, L] (t >= start, in path)."""

    token: torch.Tensor
    parent: torch.Tensor
    depth: torch.Tensor
    paths: torch.Tensor
    scored: torch.Tensor
    plans: dict = field(default_factory=dict, repr=False)  # chunk_size -> list[ChunkPlan]

    @property
    def size(self) -> int:
        return int(self.token.numel())


def build_trie(seqs: Sequence[tuple[int, ...]], start: Sequence[int]) -> Trie:
    """Insert the sequences in lexicographic order, which numbers nodes in pre-order: every
    subtree is a contiguous range of node ids (used by chunking)."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    token, parent, depth = [], [], []
    children: list[dict] = []
    root: dict = {}
    L = max((len(s) for s in seqs), default=0)
    paths = np.full((len(seqs), max(L, 1)), -1, dtype=np.int64)
    for i in order:
        level, par = root, -1
        for t, tok in enumerate(seqs[i]):
            node = level.get(tok)
            if node is None:
                node = len(token)
                level[tok] = node
                token.append(tok)
                parent.append(par)
                depth.append(t)
                children.append({})
            paths[i, t] = node
            level, par = children[node], node
    paths_t = torch.from_numpy(paths)
    pos = torch.arange(paths_t.shape[1])
    scored = (paths_t >= 0) & (pos[None, :] >= torch.tensor(list(start), dtype=torch.long)[:, None])
    as_t = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return Trie(as_t(token), as_t(parent), as_t(depth), paths_t, scored)


@dataclass
class ChunkPlan:
    """One chunk of a trie as a language-model input (m nodes: ancestors first, then its own).

    ``tokens/depth``: [m]; ``tree``: bool [m, m] ancestor-or-self; ``keep``: [R] local rows whose
    logits are needed (parents of own nodes); ``targets``: [q] global ids of own nodes that have a
    parent; ``target_row``: [q] index into ``keep``; ``target_tok``: [q]."""

    tokens: torch.Tensor
    depth: torch.Tensor
    tree: torch.Tensor
    keep: torch.Tensor
    targets: torch.Tensor
    target_row: torch.Tensor
    target_tok: torch.Tensor


def plan_chunks(trie: Trie, chunk_size: int) -> list[ChunkPlan]:
    """Split the node range into pieces [a, b) of <= chunk_size nodes, each extended by the
    ancestors of node a (in pre-order these are all ancestors of the piece's nodes lying
    outside it; they are recomputed, not scored). Cached on the trie per chunk_size."""
    if chunk_size in trie.plans:
        return trie.plans[chunk_size]
    plans = []
    parent = trie.parent.tolist()
    for a in range(0, trie.size, chunk_size):
        b = min(a + chunk_size, trie.size)
        anc, p = [], parent[a]
        while p >= 0:
            anc.append(p)
            p = parent[p]
        nodes = torch.tensor(anc[::-1] + list(range(a, b)), dtype=torch.long)
        m, n_anc = len(nodes), len(anc)
        local = torch.full((trie.size,), -1, dtype=torch.long)
        local[nodes] = torch.arange(m)
        par = trie.parent[nodes]
        lpar = torch.where(par >= 0, local[par.clamp(min=0)], -1)
        tree = torch.eye(m, dtype=torch.bool)  # ancestor-or-self, by walking up the parents
        idx, cur = torch.arange(m), lpar.clone()
        while (cur >= 0).any():
            ok = cur >= 0
            tree[idx[ok], cur[ok]] = True
            cur = torch.where(ok, lpar[cur.clamp(min=0)], -1)
        own = torch.arange(n_anc, m)
        own = own[lpar[own] >= 0]  # children of the prefix are scored from the prefix's logits
        keep, row = torch.unique(lpar[own], return_inverse=True)
        plans.append(ChunkPlan(trie.token[nodes], trie.depth[nodes], tree, keep, nodes[own], row,
                               trie.token[nodes[own]]))
    trie.plans[chunk_size] = plans
    return plans


# ------------------------------------------------------------------------------ model glue
def _check_fast_supported(model) -> None:
    cfg = model.config
    mtype = getattr(cfg, "model_type", None)
    text = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
    ttype = getattr(text, "model_type", None)
    attn = getattr(text, "_attn_implementation", None) or getattr(cfg, "_attn_implementation", None)
    hint = "; use scoring='naive' (--scoring naive)"
    if mtype not in FAST_MODEL_TYPES:
        raise VlmprobeError(f"fast likelihood scoring supports model types {FAST_MODEL_TYPES}, not {mtype!r}{hint}")
    if ttype not in FAST_TEXT_MODEL_TYPES:
        raise VlmprobeError(f"fast likelihood scoring supports language models {FAST_TEXT_MODEL_TYPES}, "
                            f"not {ttype!r}{hint}")
    if attn not in FAST_ATTENTION:
        raise VlmprobeError(f"fast likelihood scoring needs a custom 4-D attention mask, which attention "
                            f"implementation {attn!r} does not take; load with eager or sdpa attention{hint}")
    if getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True):
        raise VlmprobeError(f"fast likelihood scoring does not model sliding-window attention "
                            f"(sliding_window={text.sliding_window}){hint}")


def _base_model(vlm):
    """The transformers model, unwrapped from a peft wrapper only for config inspection."""
    model = vlm.model
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}


def _encode_prefixes(vlm, images, requests: list[Request], prefix_texts: list[str]):
    """Processor call (right padding) -> batch, real shared-prefix lengths [B] in expanded tokens.

    Checks that the processor's ids end with the tokenizer's ids (after the last image token),
    then masks out the ``len(P) - shared`` boundary tokens that are re-scored as context."""
    batch = vlm.encode(images, prefix_texts, padding_side="right")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(1)
    image_id = _image_token_id(vlm)
    shared_len = []
    for b, req in enumerate(requests):
        P = req.prefix_ids
        last_img = max((i for i, t in enumerate(P) if t == image_id), default=-1)
        tail = P[last_img + 1:]
        L = int(lengths[b])
        got = ids[b, L - len(tail):L].tolist()
        if got != tail:
            raise VlmprobeError("the processor's token ids for the prompt differ from the tokenizer's "
                                f"({got[-5:]} vs {tail[-5:]}); cannot align candidate tokens")
        drop = len(P) - req.shared
        if drop > len(tail):
            raise VlmprobeError("a candidate re-tokenizes the prompt back into the image tokens; "
                                "use an answer prefix or a separator")
        shared_len.append(L - drop)
    shared_len = torch.tensor(shared_len, device=ids.device)
    pos = torch.arange(ids.shape[1], device=ids.device)
    batch["attention_mask"] = (pos[None, :] < shared_len[:, None]).to(mask.dtype)
    return batch, shared_len


def _image_token_id(vlm):
    cfg = _base_model(vlm).config
    tid = getattr(cfg, "image_token_id", None)
    if tid is None:
        tid = getattr(cfg, "image_token_index", None)
    return tid


def _log_softmax_at(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """logits [Q, V], tokens [Q] -> log p(token) [Q] in float32 (logit - logsumexp)."""
    logits = logits.float()
    return logits.gather(-1, tokens[..., None]).squeeze(-1) - torch.logsumexp(logits, -1)


@lru_cache(maxsize=1)
def _prefix_layer_class():
    """Defined on first use (transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class PrefixLayer(DynamicLayer):
        """Holds one layer's prefix keys/values [B, H, Lp, d]; ``update`` returns
        ``prefix ++ new`` without storing anything."""

        _layer_type = None  # never register as a transformers layer type

        def __init__(self, keys: torch.Tensor, values: torch.Tensor):
            super().__init__()
            self.lazy_initialization(keys, values)
            self.keys, self.values = keys, values

        def update(self, key_states, value_states, *args, **kwargs):
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    return PrefixLayer


def _prefix_cache(kv: list[tuple[torch.Tensor, torch.Tensor]]):
    """A cache serving the prefix's key/value tensors to every layer that never changes (no
    cache object is ever mutated, GUIDE section 4) and keeps only one layer's concatenation
    alive at a time (memory: the prefix KV + one layer, not prefix + chunk for all layers)."""
    from transformers.cache_utils import Cache

    layer = _prefix_layer_class()
    return Cache(layers=[layer(k, v) for k, v in kv])


@torch.no_grad()
def _fast_batch(vlm, images, prefix_texts, requests: list[Request], tries: list[Trie], chunk_size: int):
    """Node log-probs for a batch of images: list of float32 [T_b] tensors."""
    model = vlm.model
    device = vlm.device
    batch, shared_len = _encode_prefixes(vlm, images, requests, prefix_texts)
    B, Lp = batch["input_ids"].shape
    last = (shared_len - 1).clamp(min=0)
    out = model(**batch, use_cache=True, logits_to_keep=last[:, None])
    prefix_logits = out.logits[:, 0]  # [B, V]
    kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    del out
    # kept on the model's device until the end: no host sync per image and chunk in the loop
    node_lp = [torch.full((t.size,), float("nan"), device=device) for t in tries]
    for b, trie in enumerate(tries):  # children of the prefix
        roots = (trie.parent < 0).nonzero().squeeze(1).to(device)
        node_lp[b][roots] = prefix_logits[b].float().log_softmax(-1)[trie.token.to(device)[roots]]
    dtype = kv[0][0].dtype
    neg = torch.finfo(dtype).min
    plans = [plan_chunks(t, chunk_size) for t in tries]
    for j in range(max(len(p) for p in plans)):
        rows = [b for b in range(B) if j < len(plans[b])]
        chunk = [plans[b][j] for b in rows]
        n, T = len(rows), max(len(c.tokens) for c in chunk)
        R = max(1, max(len(c.keep) for c in chunk))
        input_ids = torch.zeros(n, T, dtype=torch.long)
        position_ids = torch.zeros(n, T, dtype=torch.long)
        keep = torch.zeros(n, R, dtype=torch.long)
        tree = torch.eye(T, dtype=torch.bool).repeat(n, 1, 1)  # padding nodes see themselves only
        for r, (b, c) in enumerate(zip(rows, chunk)):
            m = len(c.tokens)
            input_ids[r, :m] = c.tokens
            position_ids[r, :m] = c.depth + int(shared_len[b])
            keep[r, :len(c.keep)] = c.keep
            tree[r, :m, :m] = c.tree
        rows_t = torch.tensor(rows, device=device)
        prefix_ok = batch["attention_mask"][rows_t].bool()[:, None, :].expand(n, T, Lp)
        allowed = torch.cat([prefix_ok, tree.to(device)], dim=2)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, neg)[:, None]
        cache = _prefix_cache(kv if n == B else [(k[rows_t], v[rows_t]) for k, v in kv])
        logits = model(input_ids=input_ids.to(device), attention_mask=mask, position_ids=position_ids.to(device),
                       past_key_values=cache, use_cache=True, logits_to_keep=keep.to(device)).logits  # [n, R, V]
        for r, (b, c) in enumerate(zip(rows, chunk)):  # log p = logit[parent row, token] - logsumexp(row)
            if len(c.targets):
                row, tok = c.target_row.to(device), c.target_tok.to(device)
                lse = torch.logsumexp(logits[r, :len(c.keep)].float(), -1)
                node_lp[b][c.targets.to(device)] = logits[r, row, tok].float() - lse[row]
        del logits, cache, mask, allowed
    return [lp.cpu() for lp in node_lp]


@torch.no_grad()
def _naive_one(vlm, image, prefix_text, req: Request) -> list[torch.Tensor]:
    """Reference: per candidate, one plain forward of ``F`` (image included); returns per
    candidate the log-probs of all of ``seqs[c]`` (float32 [len])."""
    model = vlm.model
    batch, shared_len = _encode_prefixes(vlm, None if image is None else [image], [req], [prefix_text])
    prefix = batch["input_ids"][0, :int(shared_len[0])]
    extra = _model_inputs(batch)
    out = []
    for seq in req.seqs:
        cont = torch.tensor(seq, dtype=torch.long, device=prefix.device)
        ids = torch.cat([prefix, cont])[None]
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0]
        P = prefix.shape[0]
        out.append(_log_softmax_at(logits[P - 1:P - 1 + len(seq)], cont).cpu())
    return out


def _reduce(tok_lp: torch.Tensor, scored: torch.Tensor, reduction: str) -> torch.Tensor:
    """tok_lp [K, L] (any value where not scored), scored bool [K, L] -> [K] or [K, L]."""
    if reduction == "tokens":
        # left-align the scored tokens
        order = torch.argsort((~scored).to(torch.int8), dim=1, stable=True)
        vals = torch.where(scored, tok_lp, torch.nan).gather(1, order)
        return vals
    z = torch.where(scored, tok_lp, 0.0)
    count = scored.sum(1)
    if reduction == "sum":
        return z.sum(1)
    if reduction == "mean":
        return z.sum(1) / count.clamp(min=1)
    first = scored.float().argmax(1)
    return tok_lp.gather(1, first[:, None]).squeeze(1)


# ------------------------------------------------------------------------------- public API
_PREPARED: OrderedDict = OrderedDict()  # small LRU: repeated calls with one prompt tokenize once


def _prepared(tokenizer, prefix: str, conts: tuple, separator, include_eos: bool, trie: bool):
    """(Request, Trie or None) for one prefix and its continuations, memoised (8 entries)."""
    key = (id(tokenizer), prefix, conts, separator, include_eos, trie)
    if key in _PREPARED:
        _PREPARED.move_to_end(key)
        return _PREPARED[key][1:]
    req = tokenize_continuations(tokenizer, prefix, list(conts), separator, include_eos)
    # the entry holds the tokenizer itself, so its id cannot be reused while the entry lives
    _PREPARED[key] = (tokenizer, req, build_trie(req.seqs, req.start) if trie else None)
    while len(_PREPARED) > 8:
        _PREPARED.popitem(last=False)
    return _PREPARED[key][1:]


def continuation_logprobs(vlm, images: Sequence | None, prefix_texts: Sequence[str] | str,
                          continuations: Sequence[Sequence[str]] | Sequence[str], reduction: str = "sum",
                          scoring: str = "fast", include_eos: bool = False, separator: str | None = None,
                          batch_size: int = 8, chunk_size: int = 512, progress: bool = False) -> torch.Tensor:
    """log p(continuation | image, prefix) for every row and continuation.

    images: N PIL images or None (text only); prefix_texts: N rendered chat-template strings (or
    one, shared); continuations: one list shared by all rows, or one list per row (rows may have
    different lengths: missing entries are NaN). Returns float32 [N, K] (``tokens``: [N, K, L],
    NaN-padded), on the CPU. ``batch_size``: images per forward; ``chunk_size``: trie nodes per
    image per candidate forward (bounds memory). See the module docstring for the definitions."""
    if reduction not in REDUCTIONS:
        raise VlmprobeError(f"unknown reduction {reduction!r}; choose from {REDUCTIONS}")
    if scoring not in SCORINGS:
        raise VlmprobeError(f"unknown scoring {scoring!r}; choose from {SCORINGS}")
    if batch_size < 1 or chunk_size < 1:
        raise VlmprobeError("batch_size and chunk_size must be >= 1")
    N = len(images) if images is not None else (1 if isinstance(prefix_texts, str) else len(prefix_texts))
    prefixes = [prefix_texts] * N if isinstance(prefix_texts, str) else list(prefix_texts)
    if len(prefixes) != N:
        raise VlmprobeError(f"{len(prefixes)} prefix texts for {N} images")
    shared = len(continuations) == 0 or isinstance(continuations[0], str)
    conts = [list(continuations)] * N if shared else [list(c) for c in continuations]
    if len(conts) != N:
        raise VlmprobeError(f"{len(conts)} continuation lists for {N} rows")
    if scoring == "fast":
        _check_fast_supported(_base_model(vlm))

    def request(i):
        return _prepared(vlm.tokenizer, prefixes[i], tuple(conts[i]), separator, include_eos, scoring == "fast")

    K = max((len(c) for c in conts), default=0)
    rows_out = []
    step = batch_size if scoring == "fast" else 1
    starts = range(0, N, step)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"likelihood ({scoring})", unit="batch")
    for s in starts:
        idx = list(range(s, min(s + step, N)))
        reqs = [request(i)[0] for i in idx]
        imgs = None if images is None else [images[i] for i in idx]
        if scoring == "fast":
            tries = [request(i)[1] for i in idx]
            node_lp = _fast_batch(vlm, imgs, [prefixes[i] for i in idx], reqs, tries, chunk_size)
            for trie, lp in zip(tries, node_lp):
                tok_lp = torch.where(trie.paths >= 0, lp[trie.paths.clamp(min=0)], torch.nan)
                rows_out.append(_reduce(tok_lp, trie.scored, reduction))
        else:
            req = reqs[0]
            lps = _naive_one(vlm, None if imgs is None else imgs[0], prefixes[idx[0]], req)
            L = max(1, max((len(x) for x in lps), default=1))
            tok_lp = torch.full((len(lps), L), torch.nan)
            scored = torch.zeros(len(lps), L, dtype=torch.bool)
            for c, x in enumerate(lps):
                tok_lp[c, :len(x)] = x
                scored[c, req.start[c]:len(x)] = True
            rows_out.append(_reduce(tok_lp, scored, reduction))
    if reduction == "tokens":
        L = max((r.shape[1] for r in rows_out), default=1)
        out = torch.full((N, K, L), torch.nan)
        for i, r in enumerate(rows_out):
            out[i, :r.shape[0], :r.shape[1]] = r
        return out
    out = torch.full((N, K), torch.nan)
    for i, r in enumerate(rows_out):
        out[i, :r.shape[0]] = r
    return out


_VOWEL_SOUND = tuple("aeiouAEIOU")


def apply_article(answer_prefix: str | None, candidates: Sequence[str]) -> tuple[str | None, list[str]]:
    """``a/an`` handling: each candidate gets its own article ("an apple", "a cat"; rule: first
    letter a vowel), and a trailing ``a``/``an`` word is removed from the answer prefix ("The photo
    features a" -> "The photo features"). The article is part of the scored continuation."""
    if answer_prefix:
        words = answer_prefix.rstrip().split(" ")
        if words and words[-1].lower() in ("a", "an"):
            answer_prefix = " ".join(words[:-1]) or None
    return answer_prefix, [("an " if c.startswith(_VOWEL_SOUND) else "a ") + c for c in candidates]


def score_candidates(vlm, images: Sequence, candidates: Sequence[str] | Sequence[Sequence[str]],
                     prompt: str = DEFAULT_QUESTION, answer_prefix: str | None = None, reduction: str = "sum",
                     scoring: str = "fast", include_eos: bool = False, article: str | None = None,
                     batch_size: int = 8, chunk_size: int = 512, progress: bool = False) -> torch.Tensor:
    """log p(class name | image, prompt) [N, K]: the user turn ``prompt`` with the image, the
    assistant turn opened by the chat template, then ``answer_prefix`` (e.g. "The photo features
    a") and the candidate. ``candidates``: one list for all images or one per image.
    ``article``: None or "a/an" (see ``apply_article``)."""
    if article not in (None, "a/an"):
        raise VlmprobeError(f"unknown article option {article!r}; use 'a/an' or none")
    per_image = len(candidates) > 0 and not isinstance(candidates[0], str)
    if article:
        if per_image:
            answer_prefix_out = apply_article(answer_prefix, [])[0]
            candidates = [apply_article(answer_prefix, c)[1] for c in candidates]
        else:
            answer_prefix_out, candidates = apply_article(answer_prefix, candidates)
        answer_prefix = answer_prefix_out
    prefix = vlm.render(prompt, image=True, answer_prefix=answer_prefix)
    return continuation_logprobs(vlm, list(images), prefix, candidates, reduction=reduction, scoring=scoring,
                                 include_eos=include_eos, batch_size=batch_size, chunk_size=chunk_size,
                                 progress=progress)
