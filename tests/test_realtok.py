"""Real vocabularies (vlmprobe.testing.realtok): llama.cpp's test vectors, the GGUF reader against the
``gguf`` package, the sdist extraction path, and the LLaMA rules LLaVA's prompts depend on."""
import tarfile
from pathlib import Path

import pytest

from vlmprobe.testing import realtok
from vlmprobe.errors import DataError


@pytest.fixture(scope="module")
def gguf_dir(real_models):
    return realtok.vocab_dir(Path(real_models["tokenizers/llama"]).parent, download=False)


@pytest.fixture(scope="module")
def toks(real_models):
    from transformers import AutoTokenizer

    return {n: AutoTokenizer.from_pretrained(real_models[f"tokenizers/{n}"]) for n in realtok.NAMES}


@pytest.mark.parametrize("name", realtok.NAMES)
def test_llama_cpp_test_vectors(gguf_dir, toks, name):
    """Every one of llama.cpp's vectors (46 texts each: whitespace runs, tabs/newlines, emoji,
    Cyrillic, Khmer, CJK, digit runs, a long mixed text) as transformers loads the tokenizer."""
    vectors = realtok.test_vectors(gguf_dir, name)
    assert len(vectors) == 46
    bad = [(t, toks[name].encode(t, add_special_tokens=False), ids) for t, ids in vectors
           if toks[name].encode(t, add_special_tokens=False) != ids]
    assert not bad, bad[:3]
    # decoding gives the text back (SentencePiece: the dummy prefix is stripped; byte fallback)
    for text, ids in vectors[:25]:
        if name == "qwen2" or not text.startswith(" "):
            assert toks[name].decode(ids) == text


def test_gguf_reader_matches_the_gguf_package(gguf_dir):
    gguf = pytest.importorskip("gguf")
    path = gguf_dir / realtok.GGUF["llama"]
    ours = realtok.read_gguf_metadata(path)
    fields = gguf.GGUFReader(str(path)).fields
    assert set(ours) == {k for k in fields if not k.startswith("GGUF.")}
    tokens = fields["tokenizer.ggml.tokens"]
    assert ours["tokenizer.ggml.tokens"] == [bytes(tokens.parts[i]).decode() for i in tokens.data]
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        f = fields[key]
        assert ours[key] == pytest.approx([f.parts[i][0].item() for i in f.data])
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.model", "llama.vocab_size"):
        assert ours[key] == fields[key].contents()


def test_extract_from_sdist_checks_files_and_checksums(gguf_dir, tmp_path):
    """The download path minus pip: an archive laid out like llama-cpp-python's sdist."""
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name in realtok.SHA256:
            for suffix in ("", ".inp", ".out"):
                tar.add(gguf_dir / (name + suffix), f"llama_cpp_python-0.3.36/vendor/llama.cpp/models/{name}{suffix}")
    out = realtok.extract_from_sdist(sdist, tmp_path / "cache")
    assert realtok._verified(out) and len(realtok.test_vectors(out, "qwen2")) == 46
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        (tmp_path / "x").write_bytes(b"GGUF-not-the-file")
        for name in realtok.SHA256:
            tar.add(tmp_path / "x", f"pkg/vendor/llama.cpp/models/{name}")
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        realtok.extract_from_sdist(bad, tmp_path / "cache2")
    with pytest.raises(DataError, match="no ggml-vocab"):
        empty = tmp_path / "empty.tar.gz"
        with tarfile.open(empty, "w:gz") as tar:
            tar.add(tmp_path / "x", "pkg/README")
        realtok.extract_from_sdist(empty, tmp_path / "cache3")


def test_llava_prompt_tokens_match_the_original_llava_chunking(real_models):
    """LLaVA's own code tokenizes the text around ``<image>`` chunk by chunk with SentencePiece
    (each chunk gets the dummy ``▁`` prefix; BOS only once). The converted tokenizer, with
    ``<image>`` as a special token, gives the same ids in one call (e.g. ``▁`` ``\\n`` after it)."""
    from vlmprobe.testing.real import llava_real_tokenizer

    tok = llava_real_tokenizer(real_models["tokenizers/llama"])
    prompt = "USER: <image>\nWhat type of object is in this photo? ASSISTANT: The photo features a"
    chunks = [tok(c, add_special_tokens=False).input_ids for c in prompt.split("<image>")]
    assert tok(prompt).input_ids == [tok.bos_token_id] + chunks[0] + [32000] + chunks[1]
    assert chunks[1][:2] == [29871, 13]  # "▁", "\n"
    assert tok.convert_ids_to_tokens(tok(" tench", add_special_tokens=False).input_ids) == ["▁", "▁ten", "ch"]


@pytest.mark.parametrize("name,mean,longest", [("llama", 3.253, 12), ("qwen2", 2.84, 13)])
def test_imagenet_names_token_statistics(toks, name, mean, longest):
    """Class-name lengths after the prompt (what the likelihood benchmark's trie is built from)."""
    from vlmprobe.data.imagenet_classes import imagenet_names  # what --classes imagenet uses

    from vlmprobe.models.tokentrie import tokenize_continuations

    prefix = "USER: <image>\nWhat type of object is in this photo? ASSISTANT:" if name == "llama" else \
        "<|im_start|>user\nWhat type of object is in this photo?<|im_end|>\n<|im_start|>assistant\n"
    req = tokenize_continuations(toks[name], prefix, list(imagenet_names()))
    lengths = [len(s) for s in req.seqs]
    assert req.shared == len(req.prefix_ids)  # no boundary merge for either tokenizer
    assert sum(lengths) / len(lengths) == pytest.approx(mean, abs=1e-3) and max(lengths) == longest


def test_transformers_gguf_setting_differs_only_on_leading_spaces(real_models, gguf_dir):
    """transformers' GGUF import of LLaMA uses Metaspace(prepend_scheme="first") (legacy=False)
    with no normalizer: on llama.cpp's vectors it differs exactly on the 15 texts that start with
    a space (no second "▁"), and after a special token it adds no "▁" ("<image>\\n" -> "\\n")."""
    from tokenizers import AddedToken, pre_tokenizers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_models["tokenizers/llama"])
    tok.backend_tokenizer.normalizer = None
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                                   split=False)
    vectors = realtok.test_vectors(gguf_dir, "llama")
    differ = [t for t, ids in vectors if tok.encode(t, add_special_tokens=False) != ids]
    assert differ == [t for t, _ in vectors if t.startswith(" ")] and len(differ) == 15
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<image>", special=True, normalized=False)]})
    assert tok("USER: <image>\nWhat").input_ids[-3:] == [tok.convert_tokens_to_ids("<image>"), 13, 5618]


def test_testing_cli_real_tokenizers(real_models, capsys):
    """``python -m vlmprobe.testing --real-tokenizers DIR`` reuses a complete build and prints
    the tokenizer directories and the models' specs."""
    from vlmprobe.testing.__main__ import main

    root = Path(real_models["llava-real"]).parent
    assert main(["--real-tokenizers", str(root)]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["llava-real"] == f"hf:{real_models['llava-real']}"
    assert lines["tokenizers/qwen2"] == real_models["tokenizers/qwen2"]
