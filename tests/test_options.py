"""Options declared once (vlmprobe.options): flags, validation and from_args derive from one
dataclass; a flag shared by several methods is added once; existing flag names and defaults kept."""
import argparse
from dataclasses import dataclass

import pytest

from vlmprobe import options
from vlmprobe.errors import VlmprobeError


@dataclass
class Demo(options.Options):
    temperature: float = options.option(1.0, "softmax temperature", check=lambda t: t > 0, requirement="must be > 0")
    mode: str = options.option("fast", "how to score", choices=("fast", "slow"))
    verbose: bool = options.option(False, "say more")
    keep: bool = options.option(True, "keep it", negative="--no-keep", negative_help="drop it")


def test_flags_defaults_and_validation_come_from_the_dataclass():
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, Demo)
    assert options.from_args(Demo, parser.parse_args([])) == Demo()
    got = options.from_args(Demo, parser.parse_args(["--temperature", "0.5", "--mode", "slow", "--verbose",
                                                     "--no-keep"]))
    assert got == Demo(temperature=0.5, mode="slow", verbose=True, keep=False) and got.as_dict()["keep"] is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--keep", "--no-keep"])
    with pytest.raises(VlmprobeError, match=r"^--temperature -1: must be > 0$"):
        Demo(temperature=-1)
    with pytest.raises(VlmprobeError, match=r"^--mode 'medium': choose from fast, slow$"):
        Demo(mode="medium")


def test_eval_method_flags_keep_their_names_and_defaults():
    from vlmprobe.classify import generation, likelihood, zeroshot
    from vlmprobe.cli import build_parser

    args = build_parser().parse_args(["eval", "--model", "m", "--data", "d", "--out", "o", "--method", "generate"])
    assert (args.prompt, args.closed_world, args.num_candidates, args.shuffle, args.cot, args.max_new_tokens,
            args.match) == ("default", False, None, True, False, None, "substring")
    assert (args.reduction, args.scoring, args.answer_prefix, args.include_eos, args.article, args.chunk_size,
            args.templates) == ("sum", "fast", None, False, "none", 512, "single")
    assert likelihood.from_args(args).config() == likelihood.Method().config()
    assert generation.from_args(args).config() == generation.Method().config()
    assert zeroshot.from_args(args).config() == zeroshot.Method().config()
    args = build_parser().parse_args(["eval", "--model", "m", "--data", "d", "--out", "o", "--method", "likelihood",
                                      "--score-eos", "--chunk-size", "7", "--prompt", "what"])
    m = likelihood.from_args(args)
    assert m.include_eos and m.chunk_size == 7 and m.question == "What is in this photo?"
    with pytest.raises(VlmprobeError, match="--chunk-size 0: must be at least 1"):
        likelihood.Method(chunk_size=0)
