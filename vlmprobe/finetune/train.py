"""The training loop, on accelerate (DDP / FSDP / DeepSpeed come from ``accelerate launch``
config files; the only distributed code is the
fail-fast meetings of ``vlmprobe.distributed``).

One optimizer step = ``grad_accum`` micro-batches of ``per_device_batch_size`` on each process
(global batch = batch x accum x processes). Every process takes every micro-batch: one whose
images were all unreadable runs the collator's placeholder with a zero loss (zero gradient, same
all-reduce). Each backward starts after a meeting of all processes (``distributed.barrier``), so
a failure on one process stops the others there instead of inside DDP's all-reduce. The loss of a micro-batch is the mean over its
supervised units (answer tokens for a VLM, images for CLIP); accelerate divides it by
``grad_accum`` and DDP averages over processes, so 1 process x accum 2 and 2 processes x accum 1
see the same examples per step and the same gradient. The data order of epoch e is a permutation
seeded by (seed, e), identical on every process. Schedule: linear warmup then cosine to 0,
stepped once per optimizer step (not prepared by accelerate, which would step it per process).

Files in ``output_dir``: ``config.yaml``, ``log.jsonl`` (one record per logged step / eval),
``checkpoints/step_N`` (accelerate ``save_state``: trainable weights, optimizer, scheduler, RNG,
``trainer_state.json``), the final model (``adapter/`` or ``model/``) and ``summary.json``.
A killed run started again with the same config resumes from its latest checkpoint and
reproduces the uninterrupted loss curve.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from ..progress import bar as tqdm

from .. import distributed
from ..cache import atomic_write_json
from ..errors import RunDirError
from ..runs import environment
from .config import FinetuneConfig, load_config, save_config
from .trackers import parse_report_to, scalars, write_train_log

RESUME_IGNORED = ("resume", "eval_every", "save_every", "save_total_limit", "log_every", "num_workers", "report_to",
                  "tracker_project")


class EpochSampler(torch.utils.data.Sampler):
    """Permutation of range(n) seeded by (seed, epoch); ``set_epoch`` picks the epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def make_accelerator(cfg: FinetuneConfig):
    import os

    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # a torchrun-launched world (accelerate launch --multi_gpu / recipes/accelerate/cpu.yaml) on a
    # machine without CUDA: ask for CPU so accelerate sets up MULTI_CPU (gloo) instead of nothing
    cpu_world = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    distributed.init(distributed.world())  # our process group first: accelerate joins it, failures share its store
    trackers = parse_report_to(cfg.train.report_to)
    acc = Accelerator(mixed_precision=cfg.train.mixed_precision, gradient_accumulation_steps=cfg.train.grad_accum,
                      cpu=cpu_world, log_with=trackers or None,
                      project_dir=str(Path(cfg.train.output_dir) / "trackers") if trackers else None)
    set_seed(cfg.train.seed)
    return acc


def _trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _install_checkpoint_hooks(accelerator, model) -> None:
    """Checkpoints keep only the trainable weights (a LoRA run does not write the frozen 7B base
    at every checkpoint); loading restores them over the freshly loaded base."""
    keep = _trainable_names(model)

    def save_hook(models, weights, output_dir):
        for i, m in enumerate(models):
            if m is model and isinstance(weights[i], dict):
                weights[i] = {k: v for k, v in weights[i].items() if k in keep}

    accelerator.register_save_state_pre_hook(save_hook)


def latest_checkpoint(output_dir: Path) -> Path | None:
    ckpts = [p for p in (output_dir / "checkpoints").glob("step_*") if (p / "trainer_state.json").exists()]
    return max(ckpts, key=lambda p: int(p.name.split("_")[1])) if ckpts else None


def _check_same_config(output_dir: Path, cfg: FinetuneConfig) -> None:
    """A run directory holds one config; resuming with different settings would mix two runs."""
    old_path = output_dir / "config.yaml"
    if not old_path.exists():
        return
    old = load_config(old_path).to_dict()
    new = cfg.to_dict()
    diff = [f"{s}.{k}" for s in new for k in new[s]
            if k not in RESUME_IGNORED and old.get(s, {}).get(k) != new[s][k]]
    if diff:
        raise RunDirError(f"{output_dir} holds a run with a different config ({', '.join(diff)}); "
                          "use another output_dir or resume: never after deleting it")


class JsonlLog:
    """``log.jsonl`` written by the main process; on resume, records past the checkpoint go."""

    def __init__(self, path: Path, enabled: bool, resume_step: int, accelerator=None):
        self.path, self.enabled, self.accelerator = path, enabled, accelerator
        if enabled and path.exists():
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip().endswith("}")]
            keep = [r for r in rows if r.get("step", 0) <= resume_step] if resume_step else []
            path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.accelerator is not None and self.accelerator.log_with:
            self.accelerator.log(scalars(record), step=record.get("step"))


def read_log(path: str | Path, key: str = "loss") -> dict[int, float]:
    """{step: value} of ``key`` in a log.jsonl."""
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    return {r["step"]: r[key] for r in rows if key in r}


@torch.no_grad()
def evaluate_split(accelerator, model, task, dataloader) -> dict:
    """Validation: mean loss per supervised unit and the fraction of examples fully correct
    (VLM: every answer token is the argmax; CLIP: argmax class), gathered over processes."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=accelerator.device)
    w = distributed.world()
    for batch in dataloader:
        _, per = task.forward(model, batch)  # an ``empty`` batch (all images unreadable) counts nothing
        stats = torch.stack([per["nll"], per["units"], per["correct"], torch.ones_like(per["nll"])], 1).double()
        if batch.get("empty"):
            stats = torch.zeros_like(stats)
        distributed.barrier(w)  # every rank computed its share: the gather never waits for a failed one
        totals += accelerator.gather_for_metrics(stats).sum(0)
    model.train()
    nll, units, correct_n, n = totals.tolist()
    return {"val_loss": nll / max(units, 1), "val_acc": correct_n / max(n, 1), "val_examples": int(n)}


def train(cfg: FinetuneConfig, accelerator, task, train_dataset, val_dataset=None,
          interrupt_at: int | None = None) -> dict:
    """Run (or resume) training; returns the summary also written to ``summary.json``.
    ``interrupt_at`` (tests): stop abruptly after that step, as a kill would (nothing saved)."""
    from transformers import get_cosine_schedule_with_warmup

    t = cfg.train
    out = Path(t.output_dir)
    main = accelerator.is_main_process
    w = distributed.world()
    model = task.model
    resume_dir = None
    if t.resume == "auto" and (out / "summary.json").exists() and (out / "config.yaml").exists():
        _check_same_config(out, cfg)
        if main:
            print(f"{out} already holds this finished run; not training again")
        return json.loads((out / "summary.json").read_text())
    if t.resume == "auto":
        resume_dir = latest_checkpoint(out)
    elif t.resume != "never":
        resume_dir = Path(t.resume)
        if not (resume_dir / "trainer_state.json").exists():
            raise RunDirError(f"resume: {resume_dir} is not a checkpoint (no trainer_state.json)")
    if resume_dir is not None:
        _check_same_config(out, cfg)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")

    sampler = EpochSampler(len(train_dataset), t.seed)
    loader_kw = dict(batch_size=t.per_device_batch_size, collate_fn=task.collate, num_workers=cfg.data.num_workers)
    train_dl = torch.utils.data.DataLoader(train_dataset, sampler=sampler, drop_last=False, **loader_kw)
    val_dl = torch.utils.data.DataLoader(val_dataset, shuffle=False, **loader_kw) if val_dataset else None
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RunDirError("nothing to train: no parameter requires grad")
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    params = [p for p in model.parameters() if p.requires_grad]  # as wrapped (FSDP may replace them)
    if val_dl is not None:
        val_dl = accelerator.prepare(val_dl)
    steps_per_epoch = math.ceil(len(train_dl) / t.grad_accum)
    total = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(t.warmup_ratio * total), total)
    accelerator.register_for_checkpointing(scheduler)
    _install_checkpoint_hooks(accelerator, model)

    step, epoch, micro = 0, 0, 0
    if resume_dir is not None:
        accelerator.load_state(str(resume_dir), strict=False)
        state = json.loads((resume_dir / "trainer_state.json").read_text())
        step, epoch, micro = state["step"], state["epoch"], state["micro_in_epoch"]
        if micro >= len(train_dl):
            epoch, micro = epoch + 1, 0
    log = JsonlLog(out / "log.jsonl", main, step, accelerator)
    if accelerator.log_with:
        accelerator.init_trackers(t.tracker_project, config=scalars({k: v for sec in cfg.to_dict().values()
                                                                     for k, v in sec.items()}))
    bar = tqdm(total=total, initial=step, disable=not main, desc="finetune", unit="step", mininterval=1.0)
    model.train()
    start, start_step = time.perf_counter(), step
    window = {"loss": [], "units": 0, "examples": 0, "skipped": 0}
    while step < total:
        sampler.set_epoch(epoch)
        train_dl.set_epoch(epoch)
        loader = accelerator.skip_first_batches(train_dl, micro) if micro else train_dl
        for batch in loader:
            micro += 1
            window["skipped"] += int(batch.get("skipped", 0))
            with accelerator.accumulate(model):
                loss, per = task.forward(model, batch)
                if batch.get("empty"):  # all images unreadable here: a zero loss through the same forward, so
                    loss = loss * 0.0  # this process still takes the step and DDP's all-reduce (zero gradient)
                distributed.barrier(w)  # a failure on any rank stops every rank here, not inside the all-reduce
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and t.max_grad_norm:
                    grad_norm = accelerator.clip_grad_norm_(params, t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            window["loss"].append(loss.detach().float())
            window["units"] += int(per["units"].sum())
            window["examples"] += 0 if batch.get("empty") else len(per["units"])
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            bar.update(1)
            if step % t.log_every == 0 or step == total:
                mean_loss = accelerator.reduce(torch.stack(window["loss"]).mean(), "mean").item()
                counts = accelerator.reduce(torch.tensor([window["units"], window["examples"], window["skipped"]],
                                                         device=accelerator.device), "sum").tolist()
                rec = {"step": step, "epoch": epoch, "loss": mean_loss, "lr": scheduler.get_last_lr()[0],
                       "units": counts[0], "examples": counts[1], "skipped": counts[2],
                       "elapsed_s": round(time.perf_counter() - start, 6)}
                if grad_norm is not None:
                    rec["grad_norm"] = float(grad_norm)
                log.write(rec)
                bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                window = {"loss": [], "units": 0, "examples": 0, "skipped": 0}
            if val_dl is not None and t.eval_every and step % t.eval_every == 0 and step < total:
                log.write({"step": step, **evaluate_split(accelerator, model, task, val_dl)})
            if interrupt_at is not None and step >= interrupt_at:
                raise KeyboardInterrupt(f"interrupted at step {step} (test hook)")
            if t.save_every and step % t.save_every == 0 and step < total:
                _save_checkpoint(accelerator, out, step, epoch, micro, t.save_total_limit)
            if step >= total:
                break
        else:
            epoch, micro = epoch + 1, 0
    bar.close()
    elapsed = time.perf_counter() - start
    summary = {"steps": step, "total_steps": total, "epochs_started": epoch + 1,
               "steps_per_s_this_run": (step - start_step) / elapsed if elapsed > 0 else None,
               "global_batch": t.per_device_batch_size * t.grad_accum * accelerator.num_processes,
               "num_processes": accelerator.num_processes, "resumed_from": str(resume_dir) if resume_dir else None}
    if val_dl is not None:
        final_eval = evaluate_split(accelerator, model, task, val_dl)
        log.write({"step": step, **final_eval})
        summary.update(final_eval)
    accelerator.wait_for_everyone()
    summary["model_spec"] = task.save(accelerator, model, out)
    summary["log"] = str(out / "log.jsonl")
    summary["seed"] = t.seed
    summary["environment"] = environment()  # package versions, git commit (config.yaml: the config)
    if main:
        write_train_log(out / "log.jsonl", out)
        atomic_write_json(out / "summary.json", summary)
    if accelerator.log_with:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return summary


def _save_checkpoint(accelerator, out: Path, step: int, epoch: int, micro: int, keep: int) -> None:
    ckpt = out / "checkpoints" / f"step_{step}"
    accelerator.save_state(str(ckpt))
    if accelerator.is_main_process:
        atomic_write_json(ckpt / "trainer_state.json", {"step": step, "epoch": epoch, "micro_in_epoch": micro})
        old = sorted((p for p in (out / "checkpoints").glob("step_*") if p != ckpt), key=lambda p: int(p.name[5:]))
        for p in old[: max(0, len(old) - keep + 1)]:
            shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()


def finetune(cfg: FinetuneConfig) -> dict:
    """The whole recipe in one call (model, data, train) for notebooks and the demo; returns the
    summary (``model_spec`` names what to evaluate). ``recipes/finetune.py`` spells out the same
    three blocks."""
    from .tasks import build_task, load_datasets

    def run():
        accelerator = make_accelerator(cfg)
        task = build_task(cfg, device=str(accelerator.device))
        train_data, val_data = task.datasets(*load_datasets(cfg))
        return train(cfg, accelerator, task, train_data, val_data)

    return distributed.all_or_none(distributed.world(), run)  # a failure on any process stops them all
