"""Real tokenizer vocabularies for tests and benchmarks: LLaMA-2's SentencePiece BPE (the
tokenizer of LLaVA-1.5) and Qwen2's byte-level BPE (the family of Qwen2-VL), offline.

Source: llama.cpp's vocabulary-only GGUF files (``ggml-vocab-llama-spm.gguf``,
``ggml-vocab-qwen2.gguf``, no weights) with its tokenizer test vectors (``*.gguf.inp`` texts
separated by ``\\n__ggml_vocab_test__\\n``, ``*.gguf.out`` one line of ids per text). They are
read from ``../shared/reference/tokenizers`` beside the checkout when present, else extracted
from the ``llama-cpp-python==0.3.36`` source distribution fetched with ``pip download`` (it
vendors llama.cpp's ``models/`` folder); the GGUF files' SHA-256 must match ``SHA256`` below.

Conversion (``hf_tokenizer``), GGUF arrays -> a ``tokenizers`` pipeline saved as a normal
transformers tokenizer directory:

* LLaMA (``tokenizer.ggml.model == "llama"``): BPE over the 32,000 pieces with byte fallback
  (``<0x00>``..``<0xFF>``) and merges ranked by the merged piece's SentencePiece score (the
  rule of SentencePiece's BPE: the highest-scoring available merge first). Normalizer
  ``Prepend("▁") + Replace(" ", "▁")`` and no pre-tokenizer: SentencePiece's
  ``add_dummy_prefix`` applied to every text segment between special tokens, exactly as
  sentencepiece, llama.cpp and the original LLaVA code (which tokenizes the chunks around
  ``<image>`` separately) do; ``<s>`` prepended (``add_bos``). This reproduces all 46 of
  llama.cpp's vectors. transformers' own GGUF import instead uses ``Metaspace(prepend_scheme=
  "first")`` (its ``legacy=False``), which does not prepend ``▁`` to a text that already starts
  with one: it differs on the 15 vectors with leading spaces (" Hello" -> ``▁Hello`` instead of
  ``▁ ▁Hello``) and after special tokens ("<image>\\nWhat" -> ``\\n`` instead of ``▁ \\n``).
* Qwen2 (``"gpt2"``, pre ``"qwen2"``): byte-level BPE with the GGUF merges, NFC normalizer,
  Qwen2's split regex then ``ByteLevel(use_regex=False)``; no BOS. 46 of 46 vectors.

``python -m vlmprobe.testing --real-tokenizers DIR`` writes ``DIR/llama`` and ``DIR/qwen2``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..cache import build_dir_once, file_sha256
from ..errors import DataError, VlmprobeError

NAMES = ("llama", "qwen2")
GGUF = {"llama": "ggml-vocab-llama-spm.gguf", "qwen2": "ggml-vocab-qwen2.gguf"}
SHA256 = {  # of llama.cpp's files as vendored by llama-cpp-python 0.3.36
    "ggml-vocab-llama-spm.gguf": "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69",
    "ggml-vocab-qwen2.gguf": "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c",
}
SDIST = "llama-cpp-python==0.3.36"
TEST_SEPARATOR = "\n__ggml_vocab_test__\n"
CONVERTER_VERSION = 1  # bump when the conversion changes: cached tokenizer directories are rebuilt
MARKER = ".vlmprobe-realtok.json"


def shared_dir() -> Path | None:
    """``shared/reference/tokenizers`` beside the checkout (``../shared``) or beside any folder
    above it (a git worktree may sit deeper than the main checkout); None when absent."""
    for up in Path(__file__).resolve().parents[2].parents:
        if (up / "shared" / "reference" / "tokenizers").is_dir():
            return up / "shared" / "reference" / "tokenizers"
    return None

# Qwen2's pre-tokenizer split (from its tokenizer.json; the same in Qwen2-VL)
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2-VL's special tokens occupy ids that Qwen2's GGUF fills with "[PAD<id>]" placeholders.
QWEN2_VL_SPECIALS = {151646: "<|object_ref_start|>", 151647: "<|object_ref_end|>", 151648: "<|box_start|>",
                     151649: "<|box_end|>", 151650: "<|quad_start|>", 151651: "<|quad_end|>",
                     151652: "<|vision_start|>", 151653: "<|vision_end|>", 151654: "<|vision_pad|>",
                     151655: "<|image_pad|>", 151656: "<|video_pad|>"}


# ------------------------------------------------------------------------------ obtaining
def _verified(folder: Path) -> bool:
    return all((folder / n).is_file() and file_sha256(folder / n) == s for n, s in SHA256.items())


def _wanted(name: str) -> bool:
    return any(name == g or name in (g + ".inp", g + ".out") for g in SHA256)


def extract_from_sdist(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the two GGUF files and their test vectors out of llama-cpp-python's source
    distribution (``.tar.gz``, anywhere inside it) into ``dest``; checksums verified."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    found = set()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and _wanted(base) and "/models/" in f"/{member.name}":
                with tar.extractfile(member) as src, open(dest / (base + ".part"), "wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(dest / (base + ".part"), dest / base)
                found.add(base)
    missing = sorted(set(SHA256) - found)
    if missing:
        raise DataError(f"{archive}: no {', '.join(missing)} under a models/ folder")
    for name, want in SHA256.items():
        if file_sha256(dest / name) != want:
            raise DataError(f"{dest / name}: SHA-256 mismatch (expected {want})")
    return dest


def _download(dest: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="vlmprobe-sdist-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", SDIST, "--no-deps", "--no-binary", ":all:",
               "-d", tmp, "-q"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            lines = [ln.strip() for ln in (getattr(e, "stderr", None) or str(e)).splitlines()]
            detail = " | ".join([ln for ln in lines if ln and not ln.startswith("hint:")][-2:])
            raise VlmprobeError(f"`{' '.join(cmd[2:])}` failed: {detail}") from e
        archives = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz")) + sorted(Path(tmp).glob("llama-cpp-python-*.tar.gz"))
        if not archives:
            raise VlmprobeError(f"pip download {SDIST} produced no source archive in {tmp}")
        return extract_from_sdist(archives[0], dest)


def vocab_dir(cache: str | os.PathLike | None = None, download: bool = True) -> Path:
    """A folder holding both GGUF vocabularies (+ test vectors), checksums verified: the shared
    reference copy when present, else ``cache/gguf`` (filled by ``pip download`` if needed)."""
    shared = shared_dir()
    if shared is not None and _verified(shared):
        return shared
    if cache is None:
        raise VlmprobeError("../shared/reference/tokenizers is not present and no cache folder was given "
                            "to download into")
    local = Path(cache) / "gguf"
    if _verified(local):
        return local
    if not download:
        raise VlmprobeError(f"neither ../shared/reference/tokenizers nor {local} holds the GGUF vocabularies")
    return _download(local)


def test_vectors(folder: Path, name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's (text, expected ids without BOS) pairs for ``name`` in NAMES."""
    gguf = Path(folder) / GGUF[name]
    texts = gguf.with_name(gguf.name + ".inp").read_text(encoding="utf-8").split(TEST_SEPARATOR)
    if texts and texts[-1] == "":  # every text is followed by the separator
        texts = texts[:-1]
    lines = gguf.with_name(gguf.name + ".out").read_text(encoding="utf-8").split("\n")
    if len(lines) < len(texts):
        raise DataError(f"{gguf}.out: {len(lines)} lines for {len(texts)} test texts")
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]


# ------------------------------------------------------------------------------ conversion
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: str | os.PathLike) -> dict:
    """All key/value metadata of a GGUF file (v2/v3, little-endian) as plain Python values.

    Layout (ggml's GGUF spec): ``b"GGUF"``, u32 version, u64 tensor count, u64 kv count, then per
    kv: key (u64 length + UTF-8), u32 value type, value; strings are u64 length + bytes, arrays
    u32 element type + u64 count + elements. Reads only the header, in one pass (the ``gguf``
    package's ``GGUFReader`` builds an object per array item: minutes for Qwen2's 300k strings;
    tests check both agree)."""
    import struct

    data = Path(path).read_bytes()
    if data[:4] != b"GGUF":
        raise DataError(f"{path}: not a GGUF file (magic {data[:4]!r})")
    version, _, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version not in (2, 3):
        raise DataError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    pos = 24

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        return data[pos - n:pos].decode("utf-8")

    def value(kind):
        nonlocal pos
        if kind == _STRING:
            return string()
        if kind == _ARRAY:
            sub, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if sub == _STRING:
                return [string() for _ in range(count)]
            if sub == _ARRAY or sub not in _SCALARS:
                raise DataError(f"{path}: unsupported GGUF array element type {sub}")
            fmt = _SCALARS[sub]
            size = struct.calcsize(fmt)
            out = list(struct.unpack_from(f"<{count}{fmt[1]}", data, pos))
            pos += size * count
            return out
        if kind not in _SCALARS:
            raise DataError(f"{path}: unknown GGUF value type {kind}")
        (v,) = struct.unpack_from(_SCALARS[kind], data, pos)
        pos += struct.calcsize(_SCALARS[kind])
        return v

    meta = {}
    for _ in range(n_kv):
        key = string()
        (kind,) = struct.unpack_from("<I", data, pos)
        pos += 4
        meta[key] = value(kind)
    return meta


def _read_gguf(path: Path) -> dict:
    meta = read_gguf_metadata(path)
    get = lambda key, default=None: meta.get(f"tokenizer.ggml.{key}", default)  # noqa: E731
    return {"model": get("model"), "pre": get("pre"), "tokens": get("tokens"), "types": get("token_type"),
            "bos": get("bos_token_id"), "eos": get("eos_token_id"), "unk": get("unknown_token_id"),
            "add_bos": get("add_bos_token", False), "scores": get("scores"), "merges": get("merges")}


CONTROL, BYTE = 3, 6  # GGUF token types (1 normal, 2 unknown, 3 control, 6 byte)


def spm_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """SentencePiece BPE as ranked merges: every split ``a + b`` of a normal piece into two
    pieces of the vocabulary is a merge; merges rank by the merged piece's score, highest first
    (ties: by the left part's, then the right part's id, for a fixed order)."""
    ids = {t: i for i, t in enumerate(tokens) if types[i] == 1}
    merges = []
    for piece, i in ids.items():
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in ids and b in ids:
                merges.append((-scores[i], ids[a], ids[b], a, b))
    merges.sort()
    return [(a, b) for *_, a, b in merges]


def _llama_tokenizer(g: dict):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    tokens = g["tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    unk = tokens[g["unk"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=spm_merges(tokens, g["scores"], g["types"]), unk_token=unk,
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(g["types"]) if t in (2, CONTROL)])
    bos = tokens[g["bos"]]
    if g["add_bos"]:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, g["bos"])])
    return tok, {"bos_token": bos, "eos_token": tokens[g["eos"]], "unk_token": unk}


def _qwen2_tokenizer(g: dict):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokens = list(g["tokens"])
    for i, name in QWEN2_VL_SPECIALS.items():
        if tokens[i] != f"[PAD{i}]":
            raise VlmprobeError(f"qwen2 GGUF: id {i} is {tokens[i]!r}, expected a [PAD{i}] placeholder")
        tokens[i] = name
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in g["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = [i for i, t in enumerate(g["types"]) if t == CONTROL] + list(QWEN2_VL_SPECIALS)
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in sorted(specials)])
    eos = tokens[g["eos"]]
    return tok, {"eos_token": eos, "pad_token": eos, "unk_token": None, "bos_token": None}


def hf_tokenizer(gguf_path: str | os.PathLike, **kwargs):
    """A transformers fast tokenizer converted from a llama.cpp vocabulary GGUF (see the module
    docstring); ``kwargs`` go to ``PreTrainedTokenizerFast`` (e.g. ``padding_side``)."""
    from transformers import PreTrainedTokenizerFast

    g = _read_gguf(Path(gguf_path))
    if g["model"] == "llama":
        tok, specials = _llama_tokenizer(g)
    elif g["model"] == "gpt2" and g["pre"] == "qwen2":
        tok, specials = _qwen2_tokenizer(g)
    else:
        raise VlmprobeError(f"{gguf_path}: tokenizer model {g['model']!r} (pre {g['pre']!r}) is not converted here")
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False,
                                   model_max_length=32768, **{**specials, **kwargs})


def real_tokenizers(root: str | os.PathLike, force: bool = False, download: bool = True) -> dict[str, str]:
    """``{"llama", "qwen2"} -> root/<name>``: converted tokenizer directories (``AutoTokenizer``
    loads them), built once and reused (a marker records converter version and GGUF checksum)."""
    root = Path(root).expanduser()
    out = {}
    for name in NAMES:
        meta = {"name": name, "converter_version": CONVERTER_VERSION, "sha256": SHA256[GGUF[name]]}

        def write(tmp: Path, name=name, meta=meta) -> dict:
            hf_tokenizer(vocab_dir(root, download=download) / GGUF[name]).save_pretrained(tmp)
            return meta

        out[name] = str(build_dir_once(root / name, MARKER, write, current=lambda info, m=meta: info == m,
                                       force=force))
    return out
