"""ImageNet-scale data forms through the real `vlmprobe eval` command (DataLoader workers decode
from tar byte ranges and WordNet-id folders), and the CUDA-aware dtype default."""
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import torch

from vlmprobe.models.base import LoadOptions


def test_dtype_default_is_bf16_on_cuda_only():
    assert LoadOptions(device="cuda:1").torch_dtype() == torch.bfloat16
    assert LoadOptions(device="cpu").torch_dtype() == torch.float32
    assert LoadOptions(device="cuda", dtype="float32").torch_dtype() == torch.float32
    assert LoadOptions(device="cuda").to_dict()["dtype"] == "bfloat16"  # run configs record what was used


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vlmprobe", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_eval_from_webdataset_shards_and_wnid_folders(tiny_models, digits_folder, tmp_path):
    """The same 12 digit images as wds shards (keys + .cls) and as an ImageFolder give the same
    zero-shot scores; 2 DataLoader workers read the shards by byte range."""
    from vlmprobe import load_dataset

    folder = load_dataset(str(digits_folder), limit=12)
    shards = tmp_path / "wds"
    shards.mkdir()
    (shards / "classnames.txt").write_text("\n".join(folder.classnames) + "\n")
    for k in range(2):
        with tarfile.open(shards / f"part-{k:03d}.tar", "w") as tar:
            for i in range(k * 6, k * 6 + 6):
                s = folder.samples[i]
                for name, data in ((f"{i:04d}.png", open(s.image, "rb").read()), (f"{i:04d}.cls", str(s.label).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    model = f"openclip:local-dir:{tiny_models['openclip']}"
    r = _cli("eval", "--model", model, "--data", f"wds:{shards}/part-{{000..001}}.tar", "--method", "zeroshot",
             "--workers", "2", "--batch-size", "5", "--out", tmp_path / "run_wds")
    assert r.returncode == 0, r.stderr[-2000:]
    import vlmprobe

    clip = vlmprobe.load_model(model)
    vlmprobe.evaluate(clip, folder, "zeroshot", tmp_path / "run_dir", progress=False)
    a, b = np.load(tmp_path / "run_wds" / "scores.npy"), np.load(tmp_path / "run_dir" / "scores.npy")
    assert a.shape == (12, 10) and np.allclose(a, b, atol=1e-5)
    recs = [json.loads(x) for x in open(tmp_path / "run_wds" / "samples.jsonl")]
    assert [r["id"] for r in recs] == [f"{i:04d}" for i in range(12)] and all(not r.get("skipped") for r in recs)
    cfg = json.loads((tmp_path / "run_wds" / "config.json").read_text())
    assert cfg["data"]["format"] == "webdataset"
