"""Exact log-probabilities of continuations (class names, answer options) given an image and a
rendered prompt, computed two ways that must agree: ``naive`` (the reference) and ``fast``.
This is the half of the engine that runs models; the token definition, trie, chunk plans and
reductions are pure code in ``vlmprobe.models.tokentrie`` (read its docstring first).

One contract
------------
Both paths return, per row, the log-probs ``[K, L]`` of every continuation's token sequence
(``Request.seqs``), and the same ``Request.scored_mask()`` selects what is scored; one
``reduce_logprobs`` turns them into ``sum | mean | first | tokens``.

``naive``: one plain forward of the whole sequence (image included) per (image, continuation).
Encoder-decoder language models (BLIP-2 with Flan-T5): the prompt goes to the encoder and the
decoder scores the continuation's own tokens from its start token (``tokentrie.tokenize_answers``,
``_naive_seq2seq``); naive only.

``fast`` has two exact paths; ``fast_path(model)`` picks the one the model needs from its config.

``tree`` (attention-only language models): per batch of images, one forward of the image + prefix
(right padded) that returns the KV cache; the first scored token of every candidate reads its
log-prob from the prefix's last position. Each trie chunk then goes through the model in one
forward against that cache with an explicit additive 4-D mask (a node sees its row's real prefix
tokens, its ancestors and itself) and explicit position ids (the prefix's last position + 1 +
depth, on every rotary axis: 1-D for LLaVA, the three M-RoPE axes for Qwen2-VL;
``Family.positions``). The cache is a transformers ``DynamicCache`` used only through its public
API: the chunk's forward appends its states and ``Cache.crop(-T)`` removes them again, so every
chunk sees exactly the prefix and the cache never outlives the batch (GUIDE section 4: no
candidate ever sees another's states; tests hold fast == naive across chunk boundaries). Rows
without a chunk ``j`` run one masked padding token. Needs a language model in
``FAST_TEXT_MODEL_TYPES`` that takes custom 4-D masks (eager or sdpa attention), no sliding window
and only ``full_attention`` layers.

``state`` (everything else the family allows: hybrid models with recurrent or linear-attention
layers such as Qwen3.5's Gated DeltaNet, short convolutions as LFM2's, Mamba-2 blocks,
sliding-window or chunked attention, attention kernels that ignore a 4-D mask): a recurrent state
summarises all earlier tokens, so a trie chunk cannot hide its siblings from each other with a
mask. Instead the image + prefix runs once (rows of equal length together, never padded) and
returns its cache; every candidate then continues from its own copy of that cache
(``_state_copy``: a deep copy, rows picked by the cache's public ``reorder_cache``), batched as
rows of candidate tokens (``tokentrie.plan_rows``; a candidate whose tokens but the last are a
prefix of another's rides on that row). The shared prefix cache itself is never fed to a
candidate forward, so nothing a candidate writes reaches another (GUIDE section 4); exactness
is the model's own incremental decoding (what ``generate`` relies on), and tests hold fast ==
naive on every family, at batch 1 and 5 and any chunk size.

Both: the cache is passed as ``cache=`` where the model's forward takes it (transformers >= 5.24,
which deprecates ``past_key_values=``), else as ``past_key_values=``. Requires a family whose
adapter allows it (``families.Family.fast_likelihood``; BLIP-2 and InstructBLIP run the candidates
through the language model itself, ``Family.candidate_module``) and a decoder-only language
model; anything else raises ``VlmprobeError`` naming ``--scoring naive``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import VlmprobeError
from .families import family_of
from .tokentrie import (REDUCTIONS, ContinuationTokenizer, Request, Trie, build_trie,  # noqa: F401 (re-exported)
                        plan_chunks, plan_rows, reduce_logprobs, tokenize_answers, tokenize_continuations)

SCORINGS = ("fast", "naive")
FAST_PATHS = ("tree", "state")
# Language models with plain 1-D rotary positions that accept a custom additive 4-D mask.
FAST_TEXT_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen2_vl_text", "qwen2_5_vl_text",
                         "qwen3_vl_text", "opt",  # OPT (BLIP-2): learned absolute positions take explicit ids
                         # issue 32: each checked fast == naive by the conformance suite on its tiny family
                         "qwen3_vl_moe_text", "glm4v_text", "glm4v_moe_text", "qwen3", "llama4_text", "deepseek_v3",
                         "glm_ocr_text", "aria_text", "cosmos3_edge_text", "paddleocr_vl_text")
FAST_ATTENTION = ("eager", "sdpa")
# ``layer_types`` entries of layers that keep per-token keys and values (what the tree mask addresses);
# any other entry (``linear_attention``, ``conv``, ``mamba``, ``hybrid``, ...) carries a state.
ATTENTION_LAYER_TYPES = ("full_attention",)
# config fields that only recurrent / state-space / convolutional layers have
STATE_CONFIG_KEYS = ("ssm_state_size", "mamba_num_heads", "mamba_d_state", "conv_L_cache", "linear_conv_kernel_dim",
                     "linear_num_value_heads", "layers_block_type", "conv_kernel")


def base_model(model):
    """The transformers model, unwrapped from a peft wrapper (for config and signature checks)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_encoder_decoder(model) -> bool:
    """True for an encoder-decoder language model (BLIP-2 / InstructBLIP with Flan-T5)."""
    return bool(getattr(base_model(model).config, "is_encoder_decoder", False))


def _text_config(cfg):
    return cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg


def state_layers(cfg) -> list[str]:
    """Why the language model of ``cfg`` cannot take the tree mask: its layer kinds other than
    plain attention (``layer_types``), its state-space / convolution fields (``STATE_CONFIG_KEYS``);
    [] for a pure attention stack."""
    text = _text_config(cfg)
    kinds = sorted({t for t in (getattr(text, "layer_types", None) or []) if t not in ATTENTION_LAYER_TYPES})
    keys = [k for k in STATE_CONFIG_KEYS if getattr(text, k, None) is not None]
    return [f"layer types {kinds}"] * bool(kinds) + [f"config {keys}"] * bool(keys)


def fast_path(model) -> str:
    """Which exact fast path scores this model (``VlmprobeError`` naming ``--scoring naive`` where
    none is allowed):

    - ``tree``: one masked forward per trie chunk against the shared prefix cache (module
      docstring); language models in ``FAST_TEXT_MODEL_TYPES`` with eager/sdpa attention, no
      sliding window and only ``full_attention`` layers;
    - ``state``: every other language model the family allows (recurrent, linear-attention,
      state-space or short-convolution layers, sliding windows, chunked attention, attention
      kernels that ignore a 4-D mask, language models not checked against the tree mask): the
      prefix once, then the candidates continue from copies of its cache (``_state_batch``)."""
    cfg = base_model(model).config
    mtype = getattr(cfg, "model_type", None)
    family_of(cfg).check_fast_likelihood(mtype)
    if getattr(cfg, "is_encoder_decoder", False):
        raise VlmprobeError(f"{mtype}: fast likelihood scoring needs a decoder-only language model (the encoder-decoder "
                            "scores each answer from the decoder start token); use scoring='naive' (--scoring naive)")
    text = _text_config(cfg)
    ttype = getattr(text, "model_type", None)
    attn = getattr(text, "_attn_implementation", None) or getattr(cfg, "_attn_implementation", None)
    sliding = getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True)
    tree_ok = family_of(cfg).tree_mask is None  # VideoLLaMA 3: measured off on the tree path, exact on the state path
    if tree_ok and ttype in FAST_TEXT_MODEL_TYPES and attn in FAST_ATTENTION and not sliding and not state_layers(cfg):
        return "tree"
    return "state"


def check_fast_supported(model) -> None:
    """One-line ``VlmprobeError`` naming ``--scoring naive`` unless a fast path is exact here."""
    fast_path(model)


def _cache_kwarg(model) -> str:
    """``cache`` where the forward takes it (transformers >= 5.24), else ``past_key_values``."""
    from ..compat import cache_keyword

    return cache_keyword(base_model(model).forward)


def _output_cache(out):
    """The prefix forward's KV cache (BLIP-2 / InstructBLIP: in the language model's own output)."""
    for o in (out, getattr(out, "language_model_outputs", None)):
        cache = None if o is None else (getattr(o, "cache", None) or getattr(o, "past_key_values", None))
        if cache is not None:
            return cache
    raise VlmprobeError(f"{type(out).__name__} returned no KV cache; use scoring='naive' (--scoring naive)")


def candidate_model(vlm):
    """The module that runs the candidate chunks against the prefix cache: the whole model, or the
    family's ``candidate_module`` (BLIP-2 / InstructBLIP: the causal language model, since their
    top-level forward recomputes the Q-Former image tokens and needs ``pixel_values``)."""
    name = vlm.family.candidate_module
    return vlm.model if name is None else vlm.model.get_submodule(vlm.family.module_by_name(vlm.model, name))


def _encode_prefixes(vlm, images, requests: list[Request], prefix_texts: list[str]):
    """Processor call (right padding) -> batch, real shared-prefix lengths [B] in expanded tokens.

    Checks that the processor's ids end with the tokenizer's ids (after the last image token),
    then masks out the ``len(P) - shared`` boundary tokens that are re-scored as context."""
    batch = vlm.encode(images, prefix_texts, padding_side="right")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(1)
    image_ids = vlm.placeholder_token_ids
    shared_len = []
    for b, req in enumerate(requests):
        P = req.prefix_ids
        last_img = max((i for i, t in enumerate(P) if t in image_ids), default=-1)
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


def _keep_union(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row positions [B, R] -> (their sorted union [U], each one's index in it [B, R]).
    ``logits_to_keep`` takes a 1-D tensor as "these positions in every row" in every
    transformers 5.x (per-row 2-D positions only in later releases), so rows share the union."""
    return torch.unique(keep, sorted=True, return_inverse=True)


def _chunk_inputs(plans: list[list], j: int, last_pos: torch.Tensor):
    """Chunk ``j`` of every row as padded tensors: input_ids [B, T], position_ids [A, B, T]
    (``last_pos`` [A, B] + 1 + depth on each of A rotary axes), keep [B, R], tree bool [B, T, T]
    (padding and rows without chunk j: one token that sees only itself)."""
    chunk = [p[j] if j < len(p) else None for p in plans]
    B = len(chunk)
    T = max(len(c.tokens) for c in chunk if c is not None)
    R = max([1] + [len(c.keep) for c in chunk if c is not None])
    input_ids = torch.zeros(B, T, dtype=torch.long)
    position_ids = torch.zeros(last_pos.shape[0], B, T, dtype=torch.long)
    keep = torch.zeros(B, R, dtype=torch.long)
    tree = torch.eye(T, dtype=torch.bool).repeat(B, 1, 1)
    for r, c in enumerate(chunk):
        if c is None:
            continue
        m = len(c.tokens)
        input_ids[r, :m] = c.tokens
        position_ids[:, r, :m] = last_pos[:, r, None] + 1 + c.depth
        keep[r, :len(c.keep)] = c.keep
        tree[r, :m, :m] = c.tree
    return chunk, input_ids, position_ids, keep, tree


@torch.no_grad()
def _fast_batch(vlm, images, prefix_texts, requests: list[Request], tries: list[Trie], chunk_size: int):
    """Per row, the log-probs [K, L] of every continuation's tokens (the fast path)."""
    model, device = vlm.model, vlm.device
    batch, shared_len = _encode_prefixes(vlm, images, requests, prefix_texts)
    Lp = batch["input_ids"].shape[1]
    last = (shared_len - 1).clamp(min=0)
    union, col = _keep_union(last[:, None])
    out = model(**batch, use_cache=True, logits_to_keep=union)
    prefix_logits = out.logits[torch.arange(len(last), device=device), col[:, 0]]  # [B, V]
    cache = _output_cache(out)  # the prefix's KV
    del out
    # kept on the model's device until the end: no host sync per image and chunk inside the loop
    node_lp = [torch.full((t.size,), float("nan"), device=device) for t in tries]
    for b, trie in enumerate(tries):  # children of the prefix
        roots = (trie.parent < 0).nonzero().squeeze(1).to(device)
        node_lp[b][roots] = prefix_logits[b].float().log_softmax(-1)[trie.token.to(device)[roots]]
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    neg = torch.finfo(dtype).min
    prefix_ok = batch["attention_mask"].bool()
    plans = [plan_chunks(t, chunk_size) for t in tries]
    model = candidate_model(vlm)
    cache_kw = _cache_kwarg(model)
    pos = vlm.family.positions(vlm.model, batch).cpu()  # [A, B, Lp] rotary positions of the prefix
    last_pos = pos[:, torch.arange(pos.shape[1]), last.cpu()]  # [A, B]: the last real prefix token
    for j in range(max(len(p) for p in plans)):
        chunk, input_ids, position_ids, keep, tree = _chunk_inputs(plans, j, last_pos)
        position_ids = position_ids[0] if position_ids.shape[0] == 1 else position_ids
        B, T = input_ids.shape
        allowed = torch.cat([prefix_ok[:, None, :].expand(B, T, Lp), tree.to(device)], dim=2)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, neg)[:, None]
        union, col = _keep_union(keep)
        try:
            logits = model(input_ids=input_ids.to(device), attention_mask=mask, position_ids=position_ids.to(device),
                           use_cache=True, logits_to_keep=union.to(device), **{cache_kw: cache}).logits  # [B, U, V]
        finally:
            cache.crop(-T)  # back to exactly the prefix for the next chunk
        for r, c in enumerate(chunk):  # log p = logit[parent row, token] - logsumexp(row)
            if c is not None and len(c.targets):
                kept = logits[r, col[r, :len(c.keep)].to(device)].float()  # [R_r, V]: this row's parents
                row, tok = c.target_row.to(device), c.target_tok.to(device)
                node_lp[r][c.targets.to(device)] = kept[row, tok] - torch.logsumexp(kept, -1)[row]
        del logits, mask, allowed
    node_lp = [lp.cpu() for lp in node_lp]  # one transfer per image
    return [torch.where(t.paths >= 0, lp[t.paths.clamp(min=0)], torch.nan) for t, lp in zip(tries, node_lp)]


def _cut_token_inputs(batch: dict, length: int) -> dict:
    """The prefix batch cut to its first ``length`` positions: ``input_ids``, ``attention_mask``
    and every other per-token integer input [B, full, ...] (Qwen's ``mm_token_type_ids``);
    image tensors are kept as they are."""
    full = batch["input_ids"].shape[1]
    B = batch["input_ids"].shape[0]
    return {k: v[:, :length] if (torch.is_tensor(v) and v.dim() >= 2 and v.shape[:2] == (B, full)
                                 and not v.is_floating_point()) else v for k, v in batch.items()}


def _state_copy(cache, rows: torch.Tensor):
    """A new cache whose row r is the prefix cache's row ``rows[r]``: a deep copy (the layers'
    in-place updates, token counters included, never reach ``cache``), then the copy's own
    public ``reorder_cache`` (index_select on every key/value, conv and recurrent state)."""
    import copy

    out = copy.deepcopy(cache)
    out.reorder_cache(rows)
    return out


@torch.no_grad()
def _state_batch(vlm, images, prefix_texts, requests: list[Request], chunk_size: int) -> list[torch.Tensor]:
    """Per row, the log-probs [K, L] of every continuation's tokens (the ``state`` fast path).

    1. One forward of image + shared prefix per group of rows with the same prefix length (no
       padding ever enters a recurrent state; rows of different lengths run one at a time),
       returning the cache (keys/values, conv and recurrent states) and the last position's
       logits, which score every candidate's first token.
    2. Candidate rows (``tokentrie.plan_rows``: each candidate's tokens but the last, a row that is
       a prefix of another merged into it) continue from ``_state_copy`` of that cache, at most
       ``max(1, chunk_size // width)`` rows per forward, right padded (padding sits after every
       real token of its row, so it changes nothing a scored token sees), with explicit positions
       (the prefix's last position + 1 + t on every rotary axis, ``Family.positions``) and an
       all-ones 2-D mask. Logit ``t`` of a row scores token ``t + 1`` of each candidate on it.
    The prefix cache is never passed to a forward after step 1, so no candidate sees another's states."""
    batch, shared_len = _encode_prefixes(vlm, images, requests, prefix_texts)
    if len(requests) > 1 and (shared_len != shared_len[0]).any():
        return [lp for b in range(len(requests))
                for lp in _state_batch(vlm, None if images is None else [images[b]], [prefix_texts[b]],
                                       [requests[b]], chunk_size)]
    device = vlm.device
    prefix = _cut_token_inputs(batch, int(shared_len[0]))
    out = vlm.model(**prefix, use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1].float().log_softmax(-1)  # [B, V]: the prefix's last position
    cache = _output_cache(out)
    del out
    last_pos = vlm.family.positions(vlm.model, prefix)[:, :, -1].to(device)  # [A, B]
    tok_lp, rows, entries = [], [], []  # rows: (image, input tokens); entries: (image, cand, t, row, token)
    for b, req in enumerate(requests):
        lp = torch.full((len(req.seqs), req.width), torch.nan)
        if req.seqs:
            heads = torch.tensor([s[0] for s in req.seqs], device=device)
            lp[:, 0] = first[b, heads].cpu()
        inputs, row_of = plan_rows(req.seqs)
        base = len(rows)
        rows += [(b, r) for r in inputs]
        entries += [(b, c, t, base + row_of[c], s[t]) for c, s in enumerate(req.seqs) for t in range(1, len(s))]
        tok_lp.append(lp)
    if not rows:
        return tok_lp
    model = candidate_model(vlm)
    cache_kw = _cache_kwarg(model)
    E = torch.tensor(entries, dtype=torch.long)  # [Q, 5]
    s = 0
    while s < len(rows):
        e, W = s + 1, len(rows[s][1])  # at most chunk_size tokens (rows x width) per forward, at least one row
        while e < len(rows) and (e + 1 - s) * max(W, len(rows[e][1])) <= chunk_size:
            W = max(W, len(rows[e][1]))
            e += 1
        chunk = rows[s:e]
        ids = torch.tensor([list(r) + [r[-1]] * (W - len(r)) for _, r in chunk], dtype=torch.long, device=device)
        img = torch.tensor([b for b, _ in chunk], device=device)
        pos = last_pos[:, img, None] + 1 + torch.arange(W, device=device)  # [A, R, W]
        state = _state_copy(cache, img)
        pos = pos[0] if pos.shape[0] == 1 else pos
        mask = torch.ones(len(chunk), int(shared_len[0]) + W, dtype=torch.long, device=device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                       **{cache_kw: state}).logits  # [R, W, V]
        del state
        sel = E[(E[:, 3] >= s) & (E[:, 3] < e)]
        if len(sel):
            at = logits[(sel[:, 3] - s).to(device), (sel[:, 2] - 1).to(device)].float()  # [q, V]
            got = (at.gather(1, sel[:, 4, None].to(device))[:, 0] - torch.logsumexp(at, -1)).cpu()
            for b in sel[:, 0].unique().tolist():
                m = sel[:, 0] == b
                tok_lp[b][sel[m, 1], sel[m, 2]] = got[m]
        del logits
        s = e
    return tok_lp


def _log_softmax_at(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """logits [Q, V], tokens [Q] -> log p(token) [Q] in float32 (logit - logsumexp)."""
    logits = logits.float()
    return logits.gather(-1, tokens[..., None]).squeeze(-1) - torch.logsumexp(logits, -1)


def _extend_token_inputs(extra: dict, full: int, length: int, n_new: int, suffix_values: dict,
                         prompt_inputs: tuple = ()) -> dict:
    """Per-token inputs other than ids/mask (tensors [1, full, ...] of integers: Qwen2-VL's
    ``mm_token_type_ids``, Mllama's ``cross_attention_mask`` [1, full, images, tiles], PaliGemma's
    ``token_type_ids``) cut to the prefix's ``length`` and extended for ``n_new`` appended tokens:
    with ``suffix_values[key]`` where the family names one (PaliGemma: 1 = causal suffix), else
    by repeating the prefix's last position (text after the image attends to what it attended to).
    ``prompt_inputs`` (InstructBLIP's Q-Former text) describe the prompt and are kept as they are."""
    out = {}
    for k, v in extra.items():
        per_token = torch.is_tensor(v) and v.dim() >= 2 and v.shape[:2] == (1, full) and not v.is_floating_point()
        if per_token and k not in prompt_inputs:
            v = v[:, :length]
            tail = v[:, -1:].expand(1, n_new, *v.shape[2:]).clone()
            if k in suffix_values:
                tail.fill_(suffix_values[k])
            v = torch.cat([v, tail], dim=1)
        out[k] = v
    return out


@torch.no_grad()
def _naive_one(vlm, image, prefix_text, req: Request) -> torch.Tensor:
    """Reference: per continuation, one plain forward of ``F`` (image included); returns the
    log-probs [K, L] of every continuation's tokens (NaN past its end)."""
    batch, shared_len = _encode_prefixes(vlm, None if image is None else [image], [req], [prefix_text])
    P = int(shared_len[0])
    prefix = batch["input_ids"][0, :P]
    extra = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    out = torch.full((len(req.seqs), req.width), torch.nan)
    for c, seq in enumerate(req.seqs):
        cont = torch.tensor(seq, dtype=torch.long, device=prefix.device)
        ids = torch.cat([prefix, cont])[None]
        logits = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           **_extend_token_inputs(extra, batch["input_ids"].shape[1], P, len(seq),
                                                  dict(vlm.family.suffix_inputs),
                                                  vlm.family.prompt_inputs)).logits[0]
        out[c, :len(seq)] = _log_softmax_at(logits[P - 1:P - 1 + len(seq)], cont).cpu()
    return out


@torch.no_grad()
def _naive_seq2seq(vlm, image, prefix_text, req: Request) -> torch.Tensor:
    """Encoder-decoder reference: per continuation, one forward of the encoder input (image +
    prompt, from the processor) and the decoder input ``[start] + tok(c)[:-1]``; returns the
    log-probs [K, L] of ``tok(c)`` (NaN past its end)."""
    batch = vlm.encode([image], [prefix_text], padding_side="right")
    start = base_model(vlm.model).config.get_text_config(decoder=True).decoder_start_token_id
    out = torch.full((len(req.seqs), req.width), torch.nan)
    for c, seq in enumerate(req.seqs):
        target = torch.tensor(seq, dtype=torch.long, device=vlm.device)
        dec = torch.cat([target.new_tensor([start]), target[:-1]])[None]
        logits = vlm.model(**batch, decoder_input_ids=dec).logits[0]
        out[c, :len(seq)] = _log_softmax_at(logits, target).cpu()
    return out


def continuation_logprobs(vlm, images: Sequence | None, prefix_texts: Sequence[str] | str,
                          continuations: Sequence[Sequence[str]] | Sequence[str], reduction: str = "sum",
                          scoring: str = "fast", include_eos: bool = False, separator: str | None = None,
                          batch_size: int = 8, chunk_size: int = 512, progress: bool = False,
                          path: str | None = None) -> torch.Tensor:
    """log p(continuation | image, prefix) for every row and continuation (``vlm.logprobs``).

    images: N PIL images or None (text only); prefix_texts: N rendered chat-template strings (or
    one, shared); continuations: one list shared by all rows, or one list per row (rows may have
    different lengths: missing entries are NaN). Returns float32 [N, K] (``tokens``: [N, K, L],
    NaN-padded), on the CPU. ``batch_size``: images per forward; ``chunk_size``: trie nodes per
    image per candidate forward (tree path) or candidate tokens per forward (state path), bounds
    memory. ``path``: the fast path, ``tree`` or ``state`` (default: ``fast_path(model)``, the one the
    model needs; ``state`` works wherever ``tree`` does, for comparisons). See the module
    docstrings for the definitions."""
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
    fast = scoring == "fast"
    if fast:
        needed = fast_path(vlm.model)
        if path not in (None, *FAST_PATHS) or (path == "tree" and needed != "tree"):
            raise VlmprobeError(f"fast path {path!r} is not exact here; this model needs {needed!r}")
        path = path or needed
    tokenize = vlm.continuation_tokenizer
    seq2seq = is_encoder_decoder(vlm.model)

    K = max((len(c) for c in conts), default=0)
    step = batch_size if fast else 1
    starts = range(0, N, step)
    if progress:
        from ..progress import bar as tqdm

        starts = tqdm(starts, desc=f"likelihood ({scoring})", unit="batch")
    rows_out = []
    for s in starts:
        idx = list(range(s, min(s + step, N)))
        imgs = None if images is None else [images[i] for i in idx]
        if seq2seq:  # naive only (check_fast_supported refuses fast for these language models)
            reqs = [tokenize_answers(vlm.tokenizer, conts[i], include_eos) for i in idx]
            tok_lps = [_naive_seq2seq(vlm, None if imgs is None else imgs[0], prefixes[idx[0]], reqs[0])]
            rows_out += [reduce_logprobs(lp, req.scored_mask(), reduction) for lp, req in zip(tok_lps, reqs)]
            continue
        prepared = [tokenize(prefixes[i], conts[i], separator, include_eos, trie=fast and path == "tree") for i in idx]
        reqs = [p[0] for p in prepared]
        if fast and path == "state":
            tok_lps = _state_batch(vlm, imgs, [prefixes[i] for i in idx], reqs, chunk_size)
        elif fast:
            tok_lps = _fast_batch(vlm, imgs, [prefixes[i] for i in idx], reqs, [p[1] for p in prepared], chunk_size)
        else:
            tok_lps = [_naive_one(vlm, None if imgs is None else imgs[0], prefixes[idx[0]], reqs[0])]
        rows_out += [reduce_logprobs(lp, req.scored_mask(), reduction) for lp, req in zip(tok_lps, reqs)]
    L = max((r.shape[1] for r in rows_out), default=1) if reduction == "tokens" else None
    out = torch.full((N, K) if L is None else (N, K, L), torch.nan)
    for i, r in enumerate(rows_out):
        if L is None:
            out[i, :r.shape[0]] = r
        else:
            out[i, :r.shape[0], :r.shape[1]] = r
    return out


def score_candidates(vlm, images: Sequence, candidates, **kwargs) -> torch.Tensor:
    """``vlm.score(images, candidates, **kwargs)`` (kept for scripts written against it)."""
    return vlm.score(images, candidates, **kwargs)
