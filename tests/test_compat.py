"""The library behaviour vlmprobe relies on without a public API (``vlmprobe.compat``): each test
fails loudly when a release changes it, instead of a run quietly doing something else."""
import os
from pathlib import Path

import pytest
import torch

from vlmprobe import compat
from vlmprobe.errors import VlmprobeError


def test_strong_wolfe_line_search_meets_the_wolfe_conditions():
    """torch.optim.lbfgs._strong_wolfe still exists, takes our arguments and returns a step that
    satisfies both strong-Wolfe conditions on f(x) = 0.5 x^T A x (c1 = 1e-4, c2 = 0.9, its defaults)."""
    a = torch.tensor([1.0, 10.0, 100.0])

    def fg(x):
        return float(0.5 * (a * x * x).sum()), a * x

    def obj(x, t, d):
        return fg(x + t * d)

    x = torch.tensor([1.0, 1.0, 1.0])
    loss, g = fg(x)
    d = -g
    gtd = float(g.dot(d))
    new_loss, new_g, t, evals = compat.strong_wolfe(obj, x, 1.0, d, loss, g, gtd)
    t = float(t)
    assert t > 0 and evals >= 1
    assert new_loss == pytest.approx(fg(x + t * d)[0]) and torch.allclose(new_g, fg(x + t * d)[1])
    assert new_loss <= loss + 1e-4 * t * gtd  # sufficient decrease
    assert abs(float(new_g.dot(d))) <= 0.9 * abs(gtd)  # curvature


def test_cache_keyword_names_a_parameter_of_the_real_forward(tiny_models):
    """The tiny LLaVA's language model forward takes its KV cache under the keyword we pass, and
    a forward without either keyword is a one-line error naming --scoring naive."""
    import inspect

    from vlmprobe.models import load_model
    from vlmprobe.models.likelihood import _cache_kwarg, base_model

    model = load_model(f"hf:{tiny_models['llava']}")
    kw = _cache_kwarg(model.model)
    assert kw in inspect.signature(base_model(model.model).forward).parameters
    with pytest.raises(VlmprobeError, match="--scoring naive"):
        compat.cache_keyword(lambda input_ids, attention_mask=None: None)


def test_launcher_argv_is_the_parent_command_line_and_num_processes_is_read_as_accelerate_does():
    """``launcher_argv`` reads the parent's argv (checked against /proc), and ``requested_processes``
    reads ``--num_processes`` from it exactly as accelerate's own launch parser does (a renamed or
    re-spelled flag fails here; the 2-process CPU launches in test_finetune/test_study run the path)."""
    from accelerate.commands.launch import launch_command_parser

    from vlmprobe.distributed import requested_processes

    proc = Path(f"/proc/{os.getppid()}/cmdline")  # an independent reading of the parent's argv (Linux)
    if proc.exists():
        assert compat.launcher_argv() == proc.read_bytes().decode().split("\0")[:-1]

    for launch in (["--cpu", "--num_processes", "2", "-m", "vlmprobe", "eval", "--num_processes", "5"],
                   ["--cpu", "--num-processes=3", "recipe.py"]):
        args = launch_command_parser().parse_args(launch)  # accelerate's own reading of its options
        assert requested_processes(["accelerate", "launch", *launch]) == args.num_processes
