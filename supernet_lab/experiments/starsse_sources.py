"""Source networks for `starsse_transfer`: small ResNets pre-trained on all CIFAR-10 images of classes 0-4.

StarSSE's argument (Sadrtdinov et al. 2023) is about staying in, or leaving,
the basin of a well pre-trained network; the paper starts from ImageNet
ResNet50s. This experiment trains the checkpoints our CPU-scale transfer
runs start from: one per seed, each with its own initialisation and data
order, so seeds 0..M-1 give global DE its M independent checkpoints and
seed 0 is local DE's, SSE's and StarSSE's.

Protocol (one seed): a `small_resnet` (`stages`, `width`) trained from
scratch on every training image of `source_classes` (relabelled 0..), SGD
with momentum and weight decay on a cosine schedule from `lr` to 0 over
`epochs` (`supernet.schedules.CosineRestarts`, one cycle), flip and
pad-and-crop augmentation (`supernet.transfer.TransferBatches`); scored on
the CIFAR-10 test images of those classes. The checkpoint is written to
`<out>/starsse_sources/checkpoints/<preset>-seed<seed>.keras` with a `.json`
beside it (its SHA-256, source test accuracy and config; the run's record
holds the commit), which
`starsse_transfer` checks before it uses the file (`source="files"`). The
committed checkpoints under `reports/starsse_sources/checkpoints/` let any
clone skip the pre-training.

Presets:

- `cpu`: ResNet-14 (stages (2, 2, 2), width 16, 176k parameters) on the
  25,000 training images of classes 0-4 (5,000 test images), 40 epochs,
  batch 128, lr 0.1, weight decay 5e-4. One training step costs ~2.1
  CPU-ms per image in float32 (bfloat16 saves ~10% at this width, so the
  nets stay float32): ~55 CPU-s per epoch, about 40 CPU-minutes per seed
  expected; the recorded seeds took 43-44 CPU-minutes (48 minutes wall on
  one thread beside another run) and reach ~91% on their task.
- `smoke`: the code path on generated images, two classes, one epoch.
"""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np

from supernet_lab.experiments._beyond import class_task
from supernet_lab.experiments._common import by_preset, timed_fit
from supernet import data, metrics, reports, transfer
from supernet.models.resnet import small_resnet
from supernet.schedules import CosineRestarts

NAME = "starsse_sources"
DESCRIPTION = "Source checkpoints for starsse_transfer: small ResNets pre-trained on all CIFAR-10 images of classes 0-4"
REPRODUCES = "Sadrtdinov et al. 2023 (StarSSE): the pre-trained networks its transfer experiments start from"


@dataclasses.dataclass(frozen=True)
class Config:
    # The checkpoint's index: seeds its initialisation and its data order.
    seed: int = 0
    dataset: str = "cifar10"
    dataset_kwargs: tuple = ()
    source_classes: tuple = (0, 1, 2, 3, 4)
    stages: tuple = (2, 2, 2)
    width: int = 16
    epochs: float = 40.0
    lr: float = 0.1
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    run_eagerly: bool = False


PRESETS = {
    "smoke": Config(
        dataset="synthetic",
        dataset_kwargs=(("num_classes", 4), ("input_shape", (32, 32, 3)), ("num_train", 64), ("num_test", 32)),
        source_classes=(0, 1), stages=(1, 1), width=4, epochs=1.0, batch_size=16, run_eagerly=True,
    ),
    "cpu": Config(),
}


# === Checkpoint files ===


def checkpoint_path(out_dir, preset, seed):
    """Where a run of `preset` and `seed` writes its checkpoint (`.keras`; the `.json` beside it)."""
    return Path(out_dir) / NAME / "checkpoints" / f"{preset}-seed{seed}.keras"


def sha256(path):
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_task(config, raw=None):
    """`(x_train, y_train, x_test, y_test)`: `config.source_classes` of the dataset, relabelled 0.."""
    raw = raw if raw is not None else data.load(config.dataset, validation_size=0, seed=0, **dict(config.dataset_kwargs))
    x, y = class_task(raw.x_train, raw.y_train, list(config.source_classes))
    x_test, y_test = class_task(raw.x_test, raw.y_test, list(config.source_classes))
    return x, y, x_test, y_test


def load_checkpoints(folder, count, source_classes, x_test, y_test, *, tolerance=0.005, log=None):
    """The first `count` checkpoints of `folder` (by seed), each checked against its `.json`.

    A checkpoint is used only if its file's SHA-256 equals the one recorded
    when it was written, it was trained on `source_classes`, and its
    accuracy on the source test images (`x_test`, `y_test`) is within
    `tolerance` of the recorded one (other CPUs and library versions may
    round a few predictions differently).

    Returns:
        `(models, infos)`, `infos` the `.json` contents with the re-measured
        `"checked_accuracy"` added.
    """
    folder = Path(folder)
    entries = sorted(folder.glob("*.json"), key=lambda p: json.loads(p.read_text())["seed"])
    if len(entries) < count:
        raise ValueError(
            f"{count} source checkpoints needed, {len(entries)} found in {folder}; "
            f"train them with `supernet run {NAME} --seeds 0-{count - 1}`."
        )
    models, infos = [], []
    for entry in entries[:count]:
        info = json.loads(entry.read_text())
        path = entry.with_suffix(".keras")
        if not path.exists() or sha256(path) != info["sha256"]:
            raise ValueError(f"Checkpoint {path} does not match the SHA-256 recorded in {entry.name}.")
        if list(info["config"]["source_classes"]) != list(source_classes):
            raise ValueError(
                f"Checkpoint {path} was trained on classes {info['config']['source_classes']}, not {list(source_classes)}."
            )
        model = keras.saving.load_model(path)
        accuracy = metrics.accuracy(y_test, transfer.predict_probs(model, x_test))
        if abs(accuracy - info["source_accuracy"]) > tolerance:
            raise ValueError(
                f"Checkpoint {path} scores {accuracy:.4f} on the source test images, "
                f"its record says {info['source_accuracy']:.4f}."
            )
        if log is not None:
            log(f"source checkpoint {path.name}: source test accuracy {accuracy:.4f} (recorded {info['source_accuracy']:.4f})")
        models.append(model)
        infos.append(dict(info, checked_accuracy=accuracy))
    return models, infos


def train_source(x, y, num_classes, *, stages, width, epochs, lr, batch_size, momentum, weight_decay, augment, seeds,
                 name, run_eagerly=False, callbacks=()):
    """A `small_resnet` trained from scratch: SGD, one cosine cycle from `lr` to 0 over `epochs`.

    `seeds` is `(initialisation seed, data order and augmentation seed)`.
    Returns `(model, {"wall_s", "cpu_s", "steps"})`.
    """
    init_seed, order_seed = (int(s) for s in seeds)
    model = small_resnet(x.shape[1:], num_classes, stages=stages, width=width, seed=init_seed, name=name)
    steps = transfer.steps_for(epochs, len(y), batch_size)
    optimizer = keras.optimizers.SGD(CosineRestarts(lr, steps), momentum=momentum, weight_decay=weight_decay)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", run_eagerly=run_eagerly)
    batches = transfer.TransferBatches(x, y, batch_size, steps, seed=order_seed, augment=augment)
    cost = timed_fit(model, batches, epochs=1, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks])
    return model, dict(cost, steps=steps)


class _EpochProgress(keras.callbacks.Callback):
    """Logs the loss once per epoch's worth of steps of a one-`fit`-epoch run."""

    def __init__(self, log, steps_per_epoch, epochs):
        super().__init__()
        self.log, self.steps_per_epoch, self.epochs = log, steps_per_epoch, epochs

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.steps_per_epoch == 0:
            self.log(f"  epoch {(batch + 1) // self.steps_per_epoch}/{self.epochs:g}: loss {float(logs['loss']):.4f}")


# === Experiment ===


def main(config, context):
    x, y, x_test, y_test = source_task(config)
    num_classes = len(config.source_classes)
    context.log(f"source task: {len(y)} training / {len(y_test)} test images of classes {list(config.source_classes)}")
    progress = _EpochProgress(context.log, transfer.steps_for(1.0, len(y), config.batch_size), config.epochs)
    with context.stage("pretrain"):
        model, cost = train_source(
            x, y, num_classes, stages=config.stages, width=config.width, epochs=config.epochs, lr=config.lr,
            batch_size=config.batch_size, momentum=config.momentum, weight_decay=config.weight_decay,
            augment=config.augment, seeds=np.random.default_rng([config.seed, 100]).integers(0, 2**20, size=2),
            name=f"source_{config.seed}", run_eagerly=config.run_eagerly, callbacks=[progress],
        )
    steps = cost.pop("steps")
    with context.stage("score"):
        accuracy = metrics.accuracy(y_test, transfer.predict_probs(model, x_test))
    context.log(f"source test accuracy {accuracy:.4f}")

    path = checkpoint_path(context.out_dir, context.preset, config.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    # An uncompiled copy: weights only, no optimizer state to ship.
    weights_only = keras.models.clone_model(model)
    weights_only.set_weights(model.get_weights())
    weights_only.save(tmp)
    os.replace(tmp, path)
    info = {
        "seed": config.seed, "preset": context.preset, "sha256": sha256(path), "source_accuracy": accuracy,
        "config": dataclasses.asdict(config), "params": int(model.count_params()), **cost,
    }
    path.with_suffix(".json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    context.log(f"checkpoint written to {path}")
    return {
        "source_accuracy": accuracy, "sha256": info["sha256"], "params": info["params"], "steps": steps,
        "train_cpu_s": cost["cpu_s"], "train_wall_s": cost["wall_s"], "num_train": int(len(y)), "num_test": int(len(y_test)),
    }


# === Report ===


def report(records, out_dir):
    written = []
    for runs in by_preset(records):
        config, preset = runs.config, runs.preset
        rows = [
            [
                str(r["seed"]), f"{100 * r['metrics']['source_accuracy']:.2f}", f"{r['metrics']['train_cpu_s'] / 60:.1f}",
                f"`{r['metrics']['sha256'][:12]}`", f"`{preset}-seed{r['seed']}.keras`",
            ]
            for r in sorted(runs.runs, key=lambda r: r["seed"])
        ]
        rows.append(["mean", runs.cell("metrics.source_accuracy", 100), runs.cell("metrics.train_cpu_s", 1 / 60, 1), "", ""])
        table = reports.Table(
            title=f"StarSSE source checkpoints: small ResNets on CIFAR-10 classes {list(config['source_classes'])} ({preset})",
            columns=["seed", "source test accuracy %", "training CPU min", "SHA-256", "file"],
            rows=rows,
            caption=(
                f"Preset `{preset}`, {runs.n} checkpoint(s): `small_resnet` stages {tuple(config['stages'])}, width "
                f"{config['width']}, {config['epochs']:g} epochs of SGD (lr {config['lr']} cosine to 0, momentum "
                f"{config['momentum']}, weight decay {config['weight_decay']}), batch {config['batch_size']}"
                f"{', flip and pad-and-crop augmentation' if config['augment'] else ''}. Accuracy on the CIFAR-10 test "
                f"images of these classes ({runs.mean('metrics.num_test'):.0f}). Sadrtdinov et al. start from "
                "ImageNet-pre-trained ResNet50s; these are the CPU-scale stand-ins `starsse_transfer` fine-tunes."
            ),
            source="ours (the paper's checkpoints are ImageNet ResNet50s)",
            footnotes=[
                "Files: `checkpoints/` beside this table; `starsse_transfer` checks each file's SHA-256 and source "
                "accuracy against its `.json` before using it.",
            ],
        )
        written += reports.write_table(table, out_dir / NAME / f"{NAME}_{preset}")
    return written
