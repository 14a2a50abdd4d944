"""The documentation site (mkdocs.yml, docs/): it builds with ``mkdocs build --strict`` (no broken
link, page or reference), its marked shell examples run on the miniature world, the README stays
a front page, and nothing the 1,400-line README said before the move went missing."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MOVED_FROM = "d9dd9a1572839ce47eb357919c5bdf4f2b6b6ca7"  # main before the README moved into docs/
MARK = re.compile(r"^<!-- docs-test(?: file=(?P<file>[\w.-]+))? -->\n```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M)

# Text of the old README deliberately changed by the move: old -> new (the rest of its paragraph
# must still be there verbatim). The generated family table names its new home.
REWRITTEN = {
    "(regenerate with `--readme README.md`)": "(regenerate with `--readme docs/models.md`)",
    "--families DIR --readme README.md) -->": "--families DIR --readme docs/models.md) -->",
    "[--readme README.md]  # every family": "[--readme docs/models.md]  # every family",
    # issue #32: the state path for families the tree mask cannot serve
    'computes the image+prompt prefix once per image and scores all class names in one trie-shaped forward (shared token prefixes scored once, explicit 4-D mask and position ids, the prefix cache never mutated)':
        "computes the image+prompt prefix once per image; for attention-only language models it scores all class names in one trie-shaped forward (shared token prefixes scored once, explicit 4-D mask and position ids); for recurrent, linear-attention, state-space or short-convolution layers, sliding windows or attention kernels that ignore a 4-D mask, each candidate row continues from its own copy of the prefix's cache (the `state` path, [Fast likelihood for hybrid families](hybrid-likelihood.md)); the prefix cache is never mutated",
    '`fast` (== naive, 1e-4, or a one-line refusal':
        '`fast` (== naive, 1e-4, at batch 1 and 5, through the tree or the state path, or a one-line refusal',
    # issue #31: API runs (vLLM-faithful likelihood requests, SGLang, budgets, concurrency, exit status)
    "per image one request with the answer prefix as the final assistant\n  message and one per class name (`continue_final_message`), the class's tokens being those after\n  the prefix's;":
        'per image one request for the prompt before the class name (the user turn with the generation prompt, or with `--answer-prefix` the prefix as the final assistant message, continued) and one per class name (`continue_final_message`), all with `add_special_tokens: true` so vLLM tokenizes as a local run; SGLang: `sglang:MODEL@URL` uses its native `/generate` (`input_token_logprobs`), one request per class name;',
    'next run of the same command requests only those.':
        "next run of the same command requests only those; the command exits 2 with 'N samples unanswered; run the same command again to retry' (results.json `api.unanswered`).",
    "`--concurrency N` requests are in flight within a batch; every answer is appended to\n  `DIR/api_requests.jsonl` (keyed by the request's SHA-256) as it arrives":
        '`--concurrency N` requests are in flight across batches (refilled as each finishes; lowered on 429s or rising latency, grown back additively); identical requests are sent once; every answer is appended to `DIR/api_requests.jsonl`, keyed by the SHA-256 of the request with the image replaced by its decoded pixels and encoding parameters, as it arrives',
    "(with `--price-input/--price-output` USD per million tokens; both count\n  this invocation's requests) stop the invocation cleanly (exit status 2, resumable; cost stops within one batch of the budget);":
        '(with `--price-input/--price-output` USD per million tokens) are hard caps checked before every attempt: `--max-requests` counts every HTTP attempt (retries and failures included); `--max-cost` counts answered usage plus a bound for failed attempts a server may bill, and sends an attempt only if spent + in flight + its bound stay within the budget (exit status 2, resumable);',
    '429/500/slow/malformed/dropped faults); then':
        "429/500/slow/malformed/dropped faults); it renders every request as vLLM does (the model's chat template, `add_generation_prompt` / `continue_final_message`, `add_special_tokens`), also speaks SGLang's `/generate`, and takes `--latency S`, `--cache`; then",
    '`@http://127.0.0.1:30000/v1`).':
        '`@http://127.0.0.1:30000/v1`; for `--method likelihood` use `sglang:MODEL@http://127.0.0.1:30000`, its native `/generate`).',
    "`api_concurrency.py` (`openai:` generation\nwith `--concurrency` 1/4/16 against the test server with a 1 s delay per answer: 3.4x at 4 and\n3.9x at 16 on 2 busy cores, capped by the batch of 16 and the server's one-at-a-time generation;\nidentical answers)":
        "`api_concurrency.py` (`openai:` generation\nwith `--concurrency` N = 1/4/16/64 against the test server in its own process, 0.4 s per answer from its arrival, cached answers, 256 samples, median of 3 runs for N >= 16: 3.99x at 4, 15.59x at 16, 53.13x at 64 on the idle 2-core machine ([API runs](api-runs.md#requests-keep-flowing-concurrency));\nidentical records)",
    # issue #32: families by role, the honest matrix
    'the module paths of the language model (LoRA targets), vision tower\nand projector (features,':
        "the module paths of the language model (LoRA targets), vision tower\nand projector (found by role through transformers' API; the projector is optional) (features,",
    '`tests/test_conformance.py` runs it in CI.':
        '`tests/test_conformance.py` runs the 10 contract families in CI and checks the table against the registry; the full matrix is the command (or `VLMPROBE_FULL_MATRIX=1 pytest -m slow`).',
    '`partial` when the model builds and the adapter finds its language model, vision tower and\nprojector (checks `build` and `modules`;':
        '`partial` when it builds and its language model and vision tower resolve by role (transformers\' `get_decoder` / `get_encoder("image")`; a projector is optional) (checks `build` and `modules`;',
    '`--scoring naive`), `unsupported` with the one-line reason otherwise.':
        "`--scoring naive`); `not-chat` (own section, with the reason) for types that are not chat VLMs; `unsupported` only for a cause of the model's: transformers cannot instantiate it from its default config, or it has no separate language-model / vision-encoder module.",
    'is one adapter: its module names and how its\nprojector rows map to images.':
        'is one adapter: how its\nprojector rows map to images and its positions; module names only where transformers\' `get_decoder` / `get_encoder("image")` are silent.',
    # issue #31: one writer, one SLURM state table, the test-only fault hook
    "a run whose stamp says `running` under a job id that submitit still reports queued or\nrunning (sacct's state) is waited for, not resubmitted; a killed worker fails only its own run.":
        'a run whose stamp says `running` under a job that is alive by one table of SLURM states (queued, configuring, running, suspended, requeued or held, resizing, or UNKNOWN to sacct) is waited for, not resubmitted; a run whose live writer cannot be waited for (the study was edited, or a local process) is refused in one line naming it (`--cancel-stale` cancels it first); an earlier `.old-<key>` is kept; a killed worker fails only its own run, and the workers of a killed `--executor local` study end with it ([One writer](one-writer.md)).',
    '`scontrol hold|release|requeue`':
        '`scontrol hold|release|requeue|requeuehold|suspend|resume` (a requeue stops the running job as SLURM does)',
    '(`VLMPROBE_TEST_FAULT=RANK[:TEXT]` makes models whose spec contains\n  TEXT raise on that rank: how the tests check this.)':
        '(`VLMPROBE_TEST_FAULT=RANK[:TEXT] accelerate launch … -m vlmprobe.testing.fault …` makes models whose spec contains\n  TEXT raise on that rank: how the tests check this; plain `vlmprobe` ignores the variable.)',
    'architectures with random weights (smoke tests of a zoo offline);':
        'architectures with random weights (smoke tests of a zoo offline) (open_clip: one model per architecture, `ENTRY/ARCH@random`; refused for `zoo: dir`; a `dir` zoo takes CLIP and VLM checkpoints and skips any other with a line);',
    # issue #33: the default study's new runs
    '- *Runs* (status of each), *Study file*.':
        "- *Open-world scoring of the answers*, *Random vs hard multiple choice*, *Order and batch audit*,\n  *95% intervals and paired tests* (issue 33: [VLM classification protocols](vlm-protocols.md)).\n- *Samples behind the numbers*: each run's worst classes and top confusions, linked into the sample browser.\n- *Runs* (status of each), *Study file*.",
    'ched classes and the unmatched/ambiguous rates are stored. |':
        'ched classes and the unmatched/ambiguous rates are stored. `--candidates random\\|hard:CLIP_RUN`: the true class and N-1 seeded others, or the N-1 classes a CLIP run scores highest on the same image (hard negatives; [protocols](vlm-protocols.md)). |',
    'e rest score `-inf`, i.e. probability 0, in `scores.npy`). |':
        'e rest score `-inf`, i.e. probability 0, in `scores.npy`). `--candidates random\\|hard:CLIP_RUN`: the true class and N-1 seeded others, or the N-1 classes a CLIP run scores highest on the same image (hard negatives; [protocols](vlm-protocols.md)). |',
    'The default study now has 66 runs (the\ndistribution-shift lines added 15 runs on `toy:sketch`, `toy:rendition` and `toy:corrupted` and the\neffective-robustness figure).':
        'The default study now has 72 runs (the\ndistribution-shift lines added 15 runs on `toy:sketch`, `toy:rendition` and `toy:corrupted` and the\neffective-robustness figure; issue 33 added 6: open_world of vlm and vlm-ft, 5-candidate generate/likelihood with hard candidates, audit of both).',
    # corrections carried over from issue #30's fixes (ImageNet-O, ObjectNet, mCE, OOD pairing, ER baselines)
    '(`name, pretrained, <dataset columns>`; model `openclip:<name>@<pretrained>`), so a zoo model meets':
        "(`name, pretrained, <dataset columns>`; model `openclip:<name>@<pretrained>`) or imagenet-testbed's `robustness_top1s.csv`, so a zoo model meets",
    'OOD images (label -1, no `--unlabeled` needed) |':
        "OOD images (label -1, no `--unlabeled` needed), scored over ImageNet-O's 200 classes (Hendrycks et al.'s protocol; `--label-space all`: 1,000); `metrics VAL_RUN --ood O_RUN` keeps the val images of those classes and adds `aupr_ood` (ImageNet-O positive) |",
    '(`shift.label_set_accuracy`; equals the max over mapped logits)':
        '(every number of the run — `top1`, top-5, per-class, `shift.subset_accuracy`, `compare --shift`, the report — uses this rule; equals `shift.label_set_accuracy` and the max over mapped logits)',
    "normalised by AlexNet's published errors (`shift.corruption_error`;":
        "normalised by AlexNet's published errors, only when all 15 corruptions × 5 severities were measured; otherwise null with `mce_partial` / `relative_mce_partial` and `partial_cells` beside them (`shift.corruption_error`;",
    'a run of the same model and class list on out-of-distribution':
        'a run of the same model, method, class list and label space (checked; a mismatch is refused in one line) on out-of-distribution',
    "(the ID accuracy on the\nshift set's classes for R/A/ObjectNet)":
        "(the ID accuracy on the\nshift set's classes for R/A/ObjectNet; a generation run's stored answers are matched again against those classes' names, a closed-world one is refused)",
    'over `--baseline\nID_RUN:SHIFT_RUN` pairs, a `--reference` CSV':
        'over `--baseline\nID_RUN:SHIFT_RUN` pairs of other models or a `--reference` CSV',
    'models with a blank skipped and counted), or else the\ncompared runs (`--transform probit` for probit axes).':
        "models with a blank skipped and counted; from imagenet-testbed's table only its standard-training models, or `--baseline-type TYPE`); without either there is no line and the ER column says `n/a: no baseline` (`effective_robustness: null`, `shift.sets.<set>.no_fit`; `--transform probit` for probit axes).",
    'its own testbed columns,\nthe `--baseline` pairs on the same set, or its own compared runs (`shift.sets` in `--out`);':
        'its own testbed columns or\nthe `--baseline` pairs on the same set (`shift.sets` in `--out`);',
    'in the legend, and the baseline fit. A study':
        'in the legend, and the baseline fit when there is one. A study',
    'Taori et al. fit it on standard models).':
        'Taori et al. fit it on standard models; from imagenet-testbed\'s `robustness_top1s.csv` only its standard-training models). Without `fit: true` the ER column says `n/a: no baseline` and the figure has no ER line. For ImageNet-R/-A/ObjectNet runs the points\' x is the table\'s accuracy on the subset\'s classes (`val-on-<set>-classes`, or `datasets: {"val@imagenet-r": COLUMN}`); without one they are left out, with one line saying so. A table below the figure lists the published models with ER and (testbed) mCE.',
}


def blocks(text: str) -> list[str]:
    """Paragraphs of a Markdown text: runs of lines between blank lines; a fenced block is one unit."""
    out, cur, fence = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and not line.strip():
            if cur:
                out.append("\n".join(cur))
                cur = []
        else:
            cur.append(line)
    if cur:
        out.append("\n".join(cur))
    return out


def norm(text: str) -> str:
    return " ".join(text.split())


def site_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))])


def test_readme_is_a_front_page_that_links_the_docs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for page in re.findall(r"\]\((docs/[\w./-]+\.md)\)", text):
        assert (ROOT / page).is_file(), page
    for page in ("getting-started", "models", "methods", "robustness", "studies", "api-models", "toy", "extending",
                 "benchmarks", "changelog", "browse", "reference"):
        assert f"](docs/{page}.md)" in text, page
    assert "tasks.py demo" in text and "vlmprobe study" in text
    for spec in ("openclip:", "hf:", "timm:", "openai:", "toy:"):  # one example per model kind
        assert f"--model {spec}" in text, spec


def test_every_paragraph_of_the_old_readme_is_in_the_docs():
    """Each paragraph, table and code block of the README before the move appears verbatim
    (whitespace aside) in the README or a docs page, except the few listed in REWRITTEN."""
    try:
        old = subprocess.run(["git", "show", f"{MOVED_FROM}:README.md"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"git history with {MOVED_FROM[:8]} is not available (shallow clone?)")
    # the generated family table is not prose: it follows the registry (tests/test_conformance.py
    # holds docs/models.md equal to a fresh run), so new families change it
    old = re.sub(r"<!-- support-matrix:begin.*?<!-- support-matrix:end -->", "", old, flags=re.S)
    corpus = norm(site_text())
    missing = []
    for para in blocks(old):
        for before, after in REWRITTEN.items():
            para = para.replace(before, after)
        if norm(para) not in corpus:
            missing.append(para[:200])
    assert len(blocks(old)) > 100 and not missing, "\n---\n".join(missing)


def test_mkdocs_build_strict(tmp_path):
    """``mkdocs build --strict`` (the Material theme, mkdocstrings' API reference from the
    docstrings, link and anchor validation as warnings that fail the build)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    ref = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "load_model" in ref and "write_browser" in ref and "read_run" in ref  # docstrings rendered
    models = (tmp_path / "site" / "models" / "index.html").read_text()
    assert "support-matrix:begin" in (DOCS / "models.md").read_text() and "qwen2-vl" in models


def marked_examples() -> list[tuple[str, list[tuple[str | None, str, str]]]]:
    """[(page, [(file name or None, language, body)])] of the docs' marked blocks, page order kept."""
    out = []
    for page in sorted(DOCS.glob("*.md")):
        found = [(m.group("file"), m.group("lang"), m.group("body")) for m in MARK.finditer(page.read_text())]
        if found:
            out.append((page.name, found))
    return out


def test_the_docs_mark_runnable_examples():
    pages = dict(marked_examples())
    assert {"getting-started.md", "studies.md", "browse.md"} <= set(pages)
    assert sum(1 for blocks_ in pages.values() for f, lang, _ in blocks_ if lang == "bash") >= 3


@pytest.mark.parametrize("page", [p for p, _ in marked_examples()])
def test_docs_shell_examples_run_on_the_miniature_world(page, toy_world, tmp_path, monkeypatch, capsys):
    """Every ``<!-- docs-test -->`` block of a page, in order, in a fresh directory: a block with
    ``file=NAME`` is written to NAME; each line of a bash block is a `vlmprobe` command run through
    the CLI's main (exit code 0; comments after # ignored)."""
    from vlmprobe.cli import main

    monkeypatch.chdir(tmp_path)
    ran = 0
    for file, lang, body in dict(marked_examples())[page]:
        if file:
            (tmp_path / file).write_text(body)
            continue
        assert lang == "bash", f"{page}: a marked block without file= must be bash"
        for line in body.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if not argv:
                continue
            assert argv[0] == "vlmprobe", f"{page}: only vlmprobe commands are run: {line}"
            try:
                code = main(argv[1:] + ["--no-progress"])
            except SystemExit as e:  # argparse: an unknown flag or a bad value
                code = e.code
            assert code == 0, f"{page}: `{line}` exited {code}\n{capsys.readouterr().err[-2000:]}"
            ran += 1
    assert ran
