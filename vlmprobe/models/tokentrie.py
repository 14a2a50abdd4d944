"""The pure half of the likelihood engine (no transformers imports): the token definition, the
candidate trie, chunk plans and reductions. ``vlmprobe.models.likelihood`` runs them through a model.

Tokens (one definition for both paths)
--------------------------------------
For a rendered prefix ``p`` (a full chat-template string) and a continuation ``c``, let
``P = tok(p)`` and ``F = tok(p + sep + c)`` (tokenizer ids, image placeholders not yet expanded;
``sep`` is ``" "`` unless ``p`` ends in whitespace, or the ``separator`` given). With ``n`` the
length of the longest common prefix of ``P`` and ``F``, the scored tokens are ``F[n:]`` (plus the
EOS id with ``include_eos``), conditioned on the image and ``F[:n]``::

    logp(c) = sum_{t >= n} log p(F_t | image, F_<t)

Normally ``n == len(P)``. When the tokenizer merges text across the boundary (e.g. a prefix
ending in a space under a byte-level BPE), ``n < len(P)`` and the re-tokenized boundary tokens
are context, not score. So the score is always that of the text ``p + sep + c`` as the model would
read it, and a plain forward of ``F`` reproduces it.

Reductions of the scored log-probs ``l_1..l_m``: ``sum`` (log-likelihood), ``mean`` (sum / m),
``first`` (``l_1``), ``tokens`` (all of them, left-aligned, NaN-padded).

Normalisations (``NORMALIZATIONS``, computed from ``tokens`` by ``normalize_scores``) add two that
need more than the token log-probs:

- ``char``: ``sum / len(c)``, the candidate string's length in characters (lm-evaluation-harness'
  ``acc_norm``: it divides by the continuation's character count so that long names are not
  penalised for their token count, and the score does not depend on the tokenizer);
- ``pmi``: ``log p(c | image, prompt) - log p(c | prompt without image)`` (both ``sum``): the
  pointwise mutual information of image and name, which removes the language model's prior on
  the name (Holtzman et al. 2021, "Surface Form Competition", domain-conditional PMI; the
  class-name frequency prior of the VLM-classification paper's finding 4). The second term is
  computed once per distinct name from a text-only prompt (``VisionLanguageModel.score``).

Trie and chunks
---------------
All continuations of a prefix are merged into a token trie (a token shared by several
continuations after the same context is computed once), nodes numbered in depth-first
pre-order so every subtree is a contiguous node range. A chunk is a range of at most
``chunk_size`` nodes plus the ancestors of its first node (recomputed, not scored), with its
ancestor-or-self matrix: the language-model input of one fast forward.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..errors import VlmprobeError

REDUCTIONS = ("sum", "mean", "first", "tokens")
NORMALIZATIONS = ("sum", "mean", "first", "char", "pmi")  # score reductions a user chooses (``--reduction``)


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

    @property
    def width(self) -> int:
        """L = the longest token sequence (at least 1)."""
        return max((len(s) for s in self.seqs), default=1) or 1

    def scored_mask(self) -> torch.Tensor:
        """bool [K, L]: token t of continuation c is scored iff ``start[c] <= t < len(seqs[c])``.
        Both paths score exactly these positions (the one contract of fast and naive)."""
        t = torch.arange(self.width)[None, :]
        lens = torch.tensor([len(s) for s in self.seqs], dtype=torch.long)[:, None]
        return (t >= torch.tensor(self.start, dtype=torch.long)[:, None]) & (t < lens)


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


def tokenize_answers(tokenizer, continuations: Sequence[str], include_eos: bool = False) -> Request:
    """Encoder-decoder language models (BLIP-2 with Flan-T5): the prompt goes to the encoder and
    the decoder scores each continuation's own tokens ``tok(c)`` (no special tokens; + EOS with
    ``include_eos``) from the decoder start token, all of them scored::

        logp(c) = sum_t log p(tok(c)_t | encoder(image, prompt), decoder start, tok(c)_<t)"""
    for c in continuations:
        if not isinstance(c, str) or not c.strip():
            raise VlmprobeError(f"continuation {c!r} is empty (empty candidate / class name?)")
    eos = tokenizer.eos_token_id
    if include_eos and eos is None:
        raise VlmprobeError("include_eos: the tokenizer has no eos_token_id")
    ids = tokenizer(list(continuations), add_special_tokens=False).input_ids if continuations else []
    seqs = [tuple(i) + ((eos,) if include_eos else ()) for i in ids]
    for c, seq in zip(continuations, seqs):
        if not seq:
            raise VlmprobeError(f"continuation {c!r} has no tokens")
    return Request([], 0, seqs, [0] * len(seqs))


# ------------------------------------------------------------------------------------- trie
@dataclass
class Trie:
    """Candidates' token sequences merged into a prefix tree, nodes in depth-first pre-order.

    ``token/parent/depth``: int64 [T] (parent -1: child of the prefix); ``paths``: [K, L] node of
    each candidate's t-th token (-1 past its end)."""

    token: torch.Tensor
    parent: torch.Tensor
    depth: torch.Tensor
    paths: torch.Tensor
    plans: dict = field(default_factory=dict, repr=False)  # chunk_size -> list[ChunkPlan]

    @property
    def size(self) -> int:
        return int(self.token.numel())


def build_trie(seqs: Sequence[tuple[int, ...]]) -> Trie:
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
    as_t = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return Trie(as_t(token), as_t(parent), as_t(depth), torch.from_numpy(paths))


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


def plan_rows(seqs: Sequence[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], list[int]]:
    """The candidate rows of the ``state`` fast path (``likelihood._state_batch``), which continues
    each row from a copy of the prefix's cache with no tree mask: candidate ``c``'s input is its
    tokens but the last, ``seqs[c][:-1]`` (logit ``t`` predicts token ``t + 1``; token 0 is
    predicted by the prefix). An input that is a prefix of another one is read off that longer
    row (causal: its logits are the same), so the rows are the distinct inputs that are no other's
    prefix, longest first. Returns ``(rows, row_of)``, ``row_of[c] = -1`` for one-token candidates."""
    inputs = sorted({tuple(s[:-1]) for s in seqs if len(s) > 1})
    owner: dict[tuple[int, ...], tuple[int, ...]] = {}
    for i in range(len(inputs) - 1, -1, -1):  # in lexicographic order, extensions of x directly follow x
        x = inputs[i]
        nxt = inputs[i + 1] if i + 1 < len(inputs) else None
        owner[x] = owner[nxt] if nxt is not None and nxt[:len(x)] == x else x
    rows = sorted(set(owner.values()), key=lambda r: (-len(r), r))
    index = {r: i for i, r in enumerate(rows)}
    return rows, [index[owner[tuple(s[:-1])]] if len(s) > 1 else -1 for s in seqs]


def reduce_logprobs(tok_lp: torch.Tensor, scored: torch.Tensor, reduction: str) -> torch.Tensor:
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


def normalize_scores(tokens: torch.Tensor, reduction: str, chars: torch.Tensor | None = None,
                     prior: torch.Tensor | None = None) -> torch.Tensor:
    """Left-aligned, NaN-padded token log-probs ``tokens`` [N, K, L] (``reduction="tokens"``) ->
    scores [N, K] under one of ``NORMALIZATIONS`` (module docstring). ``chars`` [N, K]: each
    candidate's length in characters (``char``); ``prior`` [N, K]: ``log p(c | prompt without
    image)`` summed over the tokens (``pmi``). A candidate with no scored token (a missing entry of
    a ragged candidate list) stays NaN."""
    if reduction not in NORMALIZATIONS:
        raise VlmprobeError(f"unknown reduction {reduction!r}; choose from {NORMALIZATIONS}")
    scored = ~tokens.isnan()
    count = scored.sum(-1)
    total = torch.where(scored, tokens, 0.0).sum(-1)
    total = torch.where(count > 0, total, torch.nan)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / count.clamp(min=1)
    if reduction == "first":
        return tokens[..., 0]
    if reduction == "char":
        if chars is None:
            raise VlmprobeError("the char normalisation needs each candidate's length in characters")
        return total / chars.to(total.dtype).clamp(min=1)
    if prior is None:
        raise VlmprobeError("the pmi normalisation needs log p(candidate | prompt without image)")
    return total - prior.to(total.dtype)


class ContinuationTokenizer:
    """``tokenize_continuations`` (+ the trie) for one tokenizer, with a small LRU memo so repeated
    calls with one prompt and label set tokenize once. Owned by the model object that owns the
    tokenizer, so the memo lives and dies with it."""

    def __init__(self, tokenizer, size: int = 8):
        self.tokenizer, self.size = tokenizer, size
        self._memo: OrderedDict = OrderedDict()

    def __call__(self, prefix: str, continuations: Sequence[str], separator: str | None = None,
                 include_eos: bool = False, trie: bool = False) -> tuple[Request, Trie | None]:
        key = (prefix, tuple(continuations), separator, include_eos, trie)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        req = tokenize_continuations(self.tokenizer, prefix, list(continuations), separator, include_eos)
        self._memo[key] = (req, build_trie(req.seqs) if trie else None)
        while len(self._memo) > self.size:
            self._memo.popitem(last=False)
        return self._memo[key]
