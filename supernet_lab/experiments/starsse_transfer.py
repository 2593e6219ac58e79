"""StarSSE vs SSE vs local / global deep ensembles in transfer learning, with soups.

Reproduces the comparison of Sadrtdinov et al. (NeurIPS 2023), "To Stay or
Not to Stay in the Pre-train Basin", as summarised in the HSE 2024 slides
(source 000: SSE / StarSSE / parameter-efficient StarSSE on ResNet50 ->
CIFAR-100) and the AIRI article (source 001: local vs global DE, StarSSE,
soups of StarSSE beating soups of SSE).

Protocol. Pre-trained checkpoints are fine-tuned on a target task by five
methods, all with SGD (momentum 0.9, weight decay) and cosine schedules
(`supernet.transfer`): local DE (`M` seeds from checkpoint 0), global DE
(checkpoint `k` for member `k`), SSE and StarSSE (member 1 = local DE
member 1, reused; then `M - 1` cycles restarting at `fge_lr` for
`fge_epochs`), and parameter-efficient StarSSE (cycles train only the last
stage and the head). Every method's members are also merged into a uniform
soup and a greedy soup (`supernet.soups`, BatchNorm statistics recomputed
on the training images; greedy selection on a held-out split). With
`bn_update=True` every member's BatchNorm statistics are recomputed on the
training images too before it is scored (`supernet.transfer`'s
`bn_update`; off in every preset, as in the source's code, which evaluates
members with their running statistics). Member 1 of the cyclic methods is
then local DE's member 1 with its recomputed statistics, so the cycles
start from those (PEFT StarSSE's frozen BatchNorm layers run with them).

Presets:

- `cpu`: small ResNets (`small_resnet`, stages (1, 1, 1), width 16) are
  pre-trained at 32x32 on CIFAR-10 classes 0-4 (10,000 images, 10 epochs,
  one checkpoint per member, each with its own seed; cached as
  `.keras` files in the run directory's `cache`, so a rerun skips them), then
  fine-tuned on classes 5-9 relabelled 0-4 from 2,500 training images
  (500 held out for greedy soups; test: the 5,000 CIFAR-10 test images of
  classes 5-9), 4 members, 10 epochs at lr 0.02, cycles at 2x lr for 1x
  epochs, batch 128, flip + pad-and-crop augmentation. Measured on this
  machine (2 shared cores): one training step of 128 augmented images
  takes 0.26 s, i.e. 2.0 ms per image, so a pre-training epoch of 10,000
  images is ~20 s and a fine-tuning epoch of 2,500 images ~5 s. Estimate
  per seed: pre-training 4 x 10 x 20 s = 13 min, fine-tuning 17 member
  runs (~50 s each, the PEFT cycles less) ~13 min, evaluation and soups
  ~3 min: ~30 min, under the 60 min budget even on a busy machine.
- `cpu_grid`: the `cpu` setting with SSE and StarSSE each at its best
  point of a 3 x 2 grid, fge_lr in {1, 2, 4} x lr and fge_epochs in
  {0.5, 1} x epochs, chosen by ensemble accuracy on the 500 held-out
  images, so the test set plays no part in the choice.
  Runs local DE, SSE and StarSSE only (one checkpoint); every point's
  numbers go to a second table. ~270 cycle epochs: ~45-60 min.
- `cpu_converged`: tests why StarSSE trails SSE at `cpu` scale. There
  the first fine-tuning (10 epochs) is still improving, so SSE's chain,
  which keeps training from the latest member, gains from the extra
  epochs alone; the source fine-tunes ResNet50 to convergence first.
  Here every fine-tuning and cycle lasts 30 epochs, with 3 members and
  one cycle setting (2 x lr, 1 x epochs): ~210 epochs of 2,500 images,
  ~30-40 min.
- `cpu_sources`: the question the `cpu` presets cannot answer, with a
  real basin: the four `starsse_sources` `cpu` checkpoints (ResNet-14s
  trained 40 epochs on all 25,000 source images; files committed under
  `reports/starsse_sources/checkpoints/`, each checked against its record
  on load), fine-tuned 20 epochs; SSE and StarSSE each at its best point
  of a 2 x 2 grid (fge_lr in {1, 2} x lr, fge_epochs in {0.5, 1} x
  epochs) chosen on the held-out images, PEFT StarSSE at StarSSE's point,
  local and global DE, soups. ~520 fine-tuning epochs of 2,500 images:
  68-74 CPU-minutes per seed, one thread (recorded: 4,080-4,460 CPU-s,
  76-82 min wall beside another run), ~46 of them in the grid.
- `cpu_sources_40`: `cpu_sources` with every fine-tuning from a source
  checkpoint (local and global DE, member 1 of the cyclic methods) twice
  as long, 40 epochs, and the same cycle lengths (10 or 20 epochs:
  fge_epochs in {0.25, 0.5} x epochs). At 20 epochs the first fine-tuning
  is still rising: over `cpu_sources`'s 3 seeds one more SSE cycle gains
  +1.11 points [-0.06, +2.28]. A timed probe of seed 0, not in the
  records (`--preset cpu_sources --set epochs=40.0 --set num_members=2
  --set "fge_grid=((2.0, 0.5),)"`), fine-tuned members to 89.14% and
  88.90% test accuracy (88.28% and 88.22% after 20 epochs), and one
  20-epoch SSE cycle at 2 x lr gained +0.60 points (+1.14 from the
  20-epoch member). ~680 fine-tuning epochs: the probe's fine-tunings took
  7.3 CPU-s per epoch, ~8 with scoring (`cpu_sources`: ~520 epochs in
  68-74 CPU-minutes), so ~90-95 CPU-minutes per seed, one thread, under
  two hours of wall time beside another run (recorded: 5,188-5,647
  CPU-s, 97-110 min wall per seed, each beside another run).
- `paper`: the source's setting: ImageNet ResNet50 (`resnet50_backbone`,
  inputs resized to 224) on CIFAR-100, 5 members, batch 256, lr 0.005 for
  25 epochs, weight decay 5e-4; cycles at 2x lr for 1x epochs (one point of
  the paper's grid fge_lr in {0.25..4} x lr, fge_epochs in {0.5..4} x
  epochs). Global DE needs independently pre-trained ResNet50 checkpoints
  (`pretrained_checkpoints`, paths to `.keras` files); without them it is
  skipped. `--set dry_run=True` runs the paper code path for one step per
  member on generated 32x32 data with `weights=None` (no download).
- `smoke`: the `cpu` code path on tiny synthetic 32x32 data, 2 members.
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np

from supernet_lab.experiments._beyond import class_task
from supernet_lab.experiments._common import by_preset
from supernet_lab.experiments.starsse_sources import load_checkpoints, train_source
from supernet_lab.findings import Claim
from supernet import data, metrics, reports, soups, transfer
from supernet.models.resnet import resnet50_backbone

NAME = "starsse_transfer"
DESCRIPTION = "Transfer learning ensembles: local/global DE, SSE, StarSSE, PEFT StarSSE and their soups"
REPRODUCES = "Sadrtdinov et al. 2023 (StarSSE), slides 000 tables; article 001 (soups)"

METHODS = ("local_de", "global_de", "sse", "star_sse", "peft_star_sse")
LABELS = dict(zip(METHODS, ("Local DE", "Global DE", "SSE", "StarSSE", "PEFT StarSSE")))
# Source 000 (ResNet50, CIFAR-100): avg. member acc., diversity, ens. acc.
SOURCE_NUMBERS = {
    "sse": (85.52, 71.57, 87.11),
    "star_sse": (85.88, 68.12, 87.41),
    "peft_star_sse": (85.57, 71.37, 87.26),
}
SOURCE_PEFT_VARIANTS = "StarSSE (1) x0.74 time 85.57/71.37/87.26; (2) x0.6 time 85.94/60.94/87.10; (3) x0.55 time 86.01/17.38/86.09"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    # Data. "cifar10": source = `source_classes`, target = `target_classes`
    # (relabelled 0..); "cifar100": the whole dataset is the target;
    # "synthetic": generated images split by classes like "cifar10".
    dataset: str = "cifar10"
    dataset_kwargs: tuple = ()
    source_classes: tuple = (0, 1, 2, 3, 4)
    target_classes: tuple = (5, 6, 7, 8, 9)
    pretrain_size: int = 10000
    target_train_size: int = 2500
    validation_size: int = 500
    # Pre-trained checkpoints. "pretrain": small ResNets trained here;
    # "files": the `starsse_sources` checkpoints in `source_dir` (seeds
    # 0..num_members-1), checked against their records;
    # "resnet50": keras.applications ResNet50 with `weights`.
    source: str = "pretrain"
    source_dir: str = ""
    stages: tuple = (1, 1, 1)
    width: int = 16
    pretrain_epochs: float = 10.0
    pretrain_lr: float = 0.1
    weights: str = "imagenet"
    resize_to: int = 0
    pretrained_checkpoints: tuple = ()
    # Fine-tuning.
    num_members: int = 4
    epochs: float = 10.0
    lr: float = 0.02
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fge_lr_factor: float = 2.0
    fge_epochs_factor: float = 1.0
    # Grid mode: `((fge_lr_factor, fge_epochs_factor), ...)`. When given,
    # SSE and StarSSE run at every point, each method's point is chosen by
    # its ensemble accuracy on the held-out split, and only checkpoint 0 is
    # pre-trained (no global DE, no PEFT row) unless the checkpoints are
    # files; `grid_peft` adds PEFT StarSSE at StarSSE's chosen point.
    fge_grid: tuple = ()
    grid_peft: bool = False
    peft_trainable: str = "last_k_stages"
    peft_last_k: int = 1
    augment: bool = True
    soups: bool = True
    run_eagerly: bool = False
    dry_run: bool = False
    # Members' BatchNorm statistics recomputed on the training images
    # (`supernet.transfer`'s `bn_update`).
    bn_update: bool = False


PRESETS = {
    "smoke": Config(
        dataset="synthetic",
        dataset_kwargs=(("num_classes", 10), ("input_shape", (32, 32, 3)), ("num_train", 200), ("num_test", 60)),
        pretrain_size=60, target_train_size=40, validation_size=20, stages=(1, 1), width=4, pretrain_epochs=1.0,
        num_members=2, epochs=1.0, lr=0.05, batch_size=32, run_eagerly=True,
    ),
    "cpu": Config(),
    # A 3 x 2 corner of the source's 5 x 4 grid (see the module docstring).
    "cpu_grid": Config(fge_grid=((1.0, 0.5), (2.0, 0.5), (4.0, 0.5), (1.0, 1.0), (2.0, 1.0), (4.0, 1.0))),
    # A first fine-tuning three times as long (see the module docstring).
    "cpu_converged": Config(epochs=30.0, num_members=3, fge_grid=((2.0, 1.0),)),
    # From the converged `starsse_sources` checkpoints (see the module docstring).
    "cpu_sources": Config(
        source="files", source_dir="reports/starsse_sources/checkpoints", epochs=20.0,
        fge_grid=((1.0, 0.5), (2.0, 0.5), (1.0, 1.0), (2.0, 1.0)), grid_peft=True,
    ),
    # The same cycles after first fine-tunings twice as long (see the module docstring).
    "cpu_sources_40": Config(
        source="files", source_dir="reports/starsse_sources/checkpoints", epochs=40.0,
        fge_grid=((1.0, 0.25), (2.0, 0.25), (1.0, 0.5), (2.0, 0.5)), grid_peft=True,
    ),
    "paper": Config(
        dataset="cifar100", validation_size=2000, source="resnet50", weights="imagenet", resize_to=224,
        num_members=5, epochs=25.0, lr=0.005, batch_size=256,
    ),
}


def _method(method, field="accuracy"):
    """Dotted path of one field of one method's ensemble in a record."""
    return f"metrics.methods.{method}.{field}"


def _soup(method, kind, field="accuracy"):
    """Dotted path of one test score of one method's uniform or greedy soup."""
    return f"metrics.soups.{method}.{kind}.{field}"


# Test accuracy, diversity or CPU time of methods fine-tuned in the same run,
# paired within a seed. The sources' "StarSSE >= X" is tested as StarSSE > X
# (and "costs no more" as "costs less"): an interval cannot tell "at least as
# good" from "better" without a margin.
# Global DE needs several pre-trained checkpoints (`cpu`, `cpu_sources*`;
# `paper` only with `pretrained_checkpoints`; grid mode only from checkpoint
# files) and grid mode runs PEFT StarSSE only with `grid_peft`: their claims
# are judged where they ran.
# The protocol's premise, a converged first fine-tuning, is tested twice: by
# one more SSE cycle at SSE's chosen point (its ensemble scored best on the
# held-out images, which favours cycles that gain most), and by the second
# member of SSE and of StarSSE at every grid point, averaged per seed (no
# selection, and each seed's value averages up to 2 x 4 cycles).
_POINTS = dict(scale=100, unit=" points")
# The cycle settings the source sweeps (fge_lr, fge_epochs as multiples of the fine-tuning's lr and epochs).
_SOURCE_GRID = "fge_lr in {0.25..4} x lr, fge_epochs in {0.5..4} x epochs"

CLAIMS = (
    Claim(
        "first_finetune_converged",
        "The cycles start from a converged model: the paper fine-tunes to convergence first, so one more SSE cycle "
        "from the first fine-tuned model gains less than 1 point.",
        "Sadrtdinov et al. 2023 (protocol; the 1-point margin is ours)",
        _method("sse", "member_accuracy.1"), minus=_method("sse", "member_accuracy.0"), compare="<", threshold=0.01,
        label="SSE member 2 - member 1 (the first fine-tuning), test accuracy", **_POINTS,
    ),
    Claim(
        "first_finetune_converged_over_grid",
        "The cycles start from a converged model: the paper fine-tunes to convergence first, so one more cycle from "
        "the first fine-tuned model gains less than 1 point, whatever the cycle's learning rate and length.",
        "Sadrtdinov et al. 2023 (protocol; the 1-point margin and the mean over the grid are ours)",
        "metrics.grid.*.*.member_accuracy.1", minus=_method("sse", "member_accuracy.0"), compare="<", threshold=0.01,
        label="member 2 - member 1 (the first fine-tuning) of SSE and of StarSSE, mean over the grid's cycle "
        "settings, test accuracy",
        **_POINTS,
    ),
    Claim(
        "star_sse_beats_local_de",
        "StarSSE improves local DE performance: its ensemble is at least as accurate as local DE's.",
        "source 001 (AIRI article on Sadrtdinov et al. 2023)",
        _method("star_sse"), minus=_method("local_de"),
        label="StarSSE - local DE, ensemble test accuracy", **_POINTS,
    ),
    Claim(
        "star_sse_beats_sse",
        "StarSSE's ensemble is at least as accurate as SSE's (87.41% vs 87.11%, ResNet50 on CIFAR-100).",
        "source 000 (regularized SSE results table)",
        _method("star_sse"), minus=_method("sse"),
        source_value=(SOURCE_NUMBERS["star_sse"][2] - SOURCE_NUMBERS["sse"][2]) / 100,
        label="StarSSE - SSE, ensemble test accuracy", **_POINTS,
    ),
    *(
        Claim(
            f"star_sse_{kind}_soup_beats_{other}",
            f"Soups of StarSSE models work more efficiently than ones of SSE and even local DE: the {kind} soup of "
            f"StarSSE beats that of {name}.",
            "source 001",
            _soup("star_sse", kind), minus=_soup(other, kind),
            label=f"{kind} soup of StarSSE - of {name}, test accuracy", **_POINTS,
        )
        for kind in ("uniform", "greedy")
        for other, name in (("sse", "SSE"), ("local_de", "local DE"))
    ),
    Claim(
        "global_de_beats_local_de",
        "In the global method each network is pre-trained independently, which provides greater diversity and, as a "
        "result, improves prediction quality: global DE's ensemble beats local DE's.",
        "source 001",
        _method("global_de"), minus=_method("local_de"),
        label="global DE - local DE, ensemble test accuracy", **_POINTS,
    ),
    *(
        Claim(
            f"global_de_more_diverse_than_{other}",
            "Global DE, each network pre-trained independently, provides greater diversity: it is the most diverse "
            f"method, more diverse than {name}.",
            "source 001 (said against local DE; against the others, the report's 'most diverse' reading)",
            _method("global_de", "diversity"), minus=_method(other, "diversity"),
            label=f"global DE - {name}, diversity (100 x disagreement / member error)", unit=" points",
        )
        for other, name in (("local_de", "local DE"), ("sse", "SSE"), ("star_sse", "StarSSE"), ("peft_star_sse", "PEFT StarSSE"))
    ),
    Claim(
        "global_de_uniform_soup_below_ensemble",
        "Models fine-tuned from different pre-trained checkpoints lie in different basins: the uniform soup of global "
        "DE is far worse than its ensemble.",
        "Sadrtdinov et al. 2023 (the paper behind sources 000/001; not stated in their texts)",
        _soup("global_de", "uniform"), minus=_method("global_de"), compare="<",
        label="uniform soup - ensemble of global DE, test accuracy", **_POINTS,
    ),
    Claim(
        "star_sse_costs_at_most_local_de",
        "StarSSE keeps local DE's cost: one pre-trained checkpoint (global DE, which pre-trains one per member, is "
        "significantly more expensive), and its M members train no longer than local DE's M fine-tunings.",
        "source 001 (local vs global DE; StarSSE starts every member from the checkpoint or member 1: the report's "
        "cost reading)",
        _method("star_sse", "cpu_s"), minus=_method("local_de", "cpu_s"), compare="<",
        label="StarSSE - local DE, CPU seconds of all members", unit=" s",
    ),
    Claim(
        "peft_star_sse_faster",
        "Parameter-efficient StarSSE (cycles train only the last stage and the head) takes less time than full "
        "StarSSE (x0.74 for the 'StarSSE (1)' variant).",
        "source 000 (StarSSE with PeFt results)",
        "metrics.peft_time_ratio", compare="<", threshold=1.0, source_value=0.74,
        label="PEFT StarSSE / StarSSE, wall time of all members", unit="x",
    ),
    Claim(
        "peft_star_sse_comparable_accuracy",
        "Parameter-efficient StarSSE saves time at comparable accuracy: its ensemble is within half a point of full "
        "StarSSE's (87.26% vs 87.41% for the 'StarSSE (1)' variant).",
        "source 000 (StarSSE with PeFt results; the half-point margin is ours)",
        _method("peft_star_sse"), minus=_method("star_sse"), threshold=-0.005,
        source_value=(SOURCE_NUMBERS["peft_star_sse"][2] - SOURCE_NUMBERS["star_sse"][2]) / 100,
        label="PEFT StarSSE - StarSSE, ensemble test accuracy", **_POINTS,
    ),
)


# === Data ===


def _task(raw, classes, size, rng, validation_size=None):
    """`raw`'s training images of `classes`, relabelled 0.., at most `size` of them drawn with `rng`.

    With a `validation_size`, that many more are drawn and a shuffled split
    of them held out; without, the validation split is empty.
    """
    x, y = class_task(raw.x_train, raw.y_train, classes)
    held_out = validation_size or 0
    if size + held_out < len(y):
        keep = np.sort(rng.choice(len(y), size=size + held_out, replace=False))
        x, y = x[keep], y[keep]
    order = np.arange(len(y)) if validation_size is None else rng.permutation(len(y))
    val, train = order[:held_out], order[held_out:]
    x_test, y_test = class_task(raw.x_test, raw.y_test, classes)
    return data.Dataset(
        name=f"{raw.name} classes {list(classes)}", x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
        x_test=x_test, y_test=y_test, num_classes=len(classes), input_shape=tuple(x.shape[1:]),
        class_names=tuple(raw.class_names[c] for c in classes),
    )


def _load(config):
    """`(source_dataset or None, target_dataset)`."""
    kwargs = dict(config.dataset_kwargs)
    if config.dry_run:
        # The paper code path on generated CIFAR-sized data: a few images, one step each.
        return None, data.load(
            "synthetic", validation_size=4, seed=config.seed, num_classes=4, input_shape=(32, 32, 3), num_train=12, num_test=8
        )
    if config.dataset == "cifar100":
        return None, data.load("cifar100", validation_size=config.validation_size, seed=config.seed, **kwargs)
    raw = data.load(config.dataset, validation_size=0, seed=config.seed, **kwargs)
    rng = np.random.default_rng([config.seed, 7])
    source = _task(raw, config.source_classes, config.pretrain_size, rng)
    return source, _task(raw, config.target_classes, config.target_train_size, rng, config.validation_size)


# === Pre-trained checkpoints ===


def _pretrain(config, source, k, context):
    """Checkpoint `k`: a small ResNet trained on the source classes, kept in the run folder's cache."""
    key = {
        "k": k, "seed": config.seed, "dataset": config.dataset, "dataset_kwargs": repr(config.dataset_kwargs),
        "classes": list(config.source_classes), "size": len(source.x_train), "stages": list(config.stages),
        "width": config.width, "epochs": config.pretrain_epochs, "lr": config.pretrain_lr,
        "batch_size": config.batch_size, "augment": config.augment,
    }

    def train():
        model, cost = train_source(
            source.x_train, source.y_train, source.num_classes, stages=config.stages, width=config.width,
            epochs=config.pretrain_epochs, lr=config.pretrain_lr, batch_size=config.batch_size, momentum=0.9,
            weight_decay=5e-4, augment=config.augment, seeds=np.random.default_rng([config.seed, 100 + k]).integers(0, 2**20, size=2),
            name=f"pretrained_{k}", run_eagerly=config.run_eagerly,
        )
        wall = cost["wall_s"]
        epoch_s = wall / max(config.pretrain_epochs, 1e-9)
        context.log(f"checkpoint {k}: pre-trained {cost['steps']} steps in {wall:.1f}s ({epoch_s:.1f}s per epoch)")
        return model, {"wall_s": wall, "epoch_wall_s": epoch_s}

    return context.cached_model(f"pretrained_{k}", key, train)


def _source_folder(folder):
    """`folder` as given if it exists (absolute or from the working directory), else from the repository root."""
    path = Path(folder)
    return path if path.is_absolute() or path.exists() else Path(__file__).resolve().parents[2] / path


def _checkpoints(config, source, context):
    """`(checkpoints, info)`: checkpoint 0 for local methods, all for global DE."""
    info = {"source_accuracy": [], "pretrain_wall_s": [], "global_de": True}
    if config.source == "files":
        if not config.source_dir:
            raise ValueError("Config `source='files'` needs `source_dir`, a folder of `starsse_sources` checkpoints.")
        models, infos = load_checkpoints(
            _source_folder(config.source_dir), config.num_members, config.source_classes, source.x_test, source.y_test,
            log=context.log,
        )
        info["source_accuracy"] = [i["checked_accuracy"] for i in infos]
        info["pretrain_wall_s"] = [i["wall_s"] for i in infos]
        info["pretrain_cpu_s"] = [i["cpu_s"] for i in infos]
        info["checkpoints"] = [{"seed": i["seed"], "preset": i["preset"], "sha256": i["sha256"]} for i in infos]
        info["global_de"] = len(models) > 1
        return models, info
    if config.source == "pretrain":
        models = []
        # Grid mode compares local methods only: checkpoint 0 is enough.
        for k in range(1 if config.fge_grid else config.num_members):
            model, meta = _pretrain(config, source, k, context)
            probs = transfer.predict_probs(model, source.x_test)
            info["source_accuracy"].append(metrics.accuracy(source.y_test, probs))
            info["pretrain_wall_s"].append(meta["wall_s"])
            models.append(model)
        info["global_de"] = len(models) > 1
        return models, info
    if config.source != "resnet50":
        raise ValueError(f"Config `source` must be 'pretrain', 'files' or 'resnet50'. Received: source={config.source!r}")
    weights = None if config.dry_run or config.weights in (None, "None", "none", "") else config.weights
    resize = config.resize_to or None

    def backbone():
        return resnet50_backbone((32, 32, 3), weights=weights, resize_to=resize)

    models = [backbone()]
    if config.fge_grid:
        info["global_de"] = False
        return models, info
    if config.dry_run:
        models.append(backbone())  # random-init stand-ins for independent checkpoints
    else:
        models += [keras.saving.load_model(p) for p in config.pretrained_checkpoints]
    if len(models) < 2:
        info["global_de"] = False
        context.log("global DE skipped: no independently pre-trained ResNet50 checkpoints given")
    return models, info


# === Main ===


def _summary(record, first_wall=0.0, first_cpu=0.0):
    """A method's record for the results, with member 1's time (`first_*`) added where it was reused."""
    members = record["members"]
    return {
        **{k: record["ensemble"][k] for k in ("avg_member_accuracy", "diversity", "accuracy", "nll", "calibrated_nll")},
        "num_ok": record["num_ok"],
        "num_failed": record["num_failed"],
        "wall_s": record["wall_s"] + first_wall,
        "cpu_s": record["cpu_s"] + first_cpu,
        "cycles_wall_s": float(sum(m["wall_s"] for m in members[1:])),
        **{f"member_{k}": [m[k] for m in members] for k in ("accuracy", "status", "wall_s")},
        "messages": [m["message"] for m in members if m["message"]],
    }


def _soup_scores(model, ds):
    """Test accuracy, NLL and calibrated NLL of a soup; None for each if its outputs are not finite."""
    probs = transfer.predict_probs(model, ds.x_test)
    if not np.all(np.isfinite(probs)):
        return dict.fromkeys(("accuracy", "nll", "calibrated_nll"))
    probs /= probs.sum(axis=-1, keepdims=True)
    y = ds.y_test
    return {"accuracy": metrics.accuracy(y, probs), "nll": metrics.nll(y, probs), "calibrated_nll": metrics.calibrated_nll(y, probs)}


def _val_accuracy(members, ds):
    """Ensemble (softmax vote) accuracy on the held-out split: the grid's selection score."""
    probs = np.mean([transfer.predict_probs(m, ds.x_val) for m in members], axis=0)
    return metrics.accuracy(ds.y_val, probs)


def _soups(members, ds, batch_size):
    uniform = soups.uniform_soup(members, x_train=ds.x_train, batch_size=batch_size)
    greedy = soups.greedy_soup(members, ds.x_val, ds.y_val, x_train=ds.x_train, batch_size=batch_size)
    return {
        "uniform": _soup_scores(uniform, ds),
        "greedy": {**_soup_scores(greedy, ds), "ingredients": [int(i) for i in greedy.soup_info["ingredients"]]},
    }


def main(config, context):
    with context.stage("data"):
        source, target = _load(config)
        if source is not None:
            context.log(f"source: {source.summary()}")
        context.log(f"target: {target.summary()}")
    with context.stage("pretrain"):
        checkpoints, pretrain_info = _checkpoints(config, source, context)

    one_step = config.dry_run
    common = dict(
        lr=config.lr, batch_size=config.batch_size, momentum=config.momentum, weight_decay=config.weight_decay,
        augment=config.augment and not one_step, seed=config.seed, log=context.log,
        run_eagerly=config.run_eagerly, bn_update=config.bn_update,
    )
    epochs = 1.0 if one_step else config.epochs
    num_members = 2 if one_step else config.num_members
    cyclic = dict(num_members=num_members, epochs=epochs)
    results, member_models = {}, {}
    with context.stage("local_de"):
        # Each method is one resumable unit: a killed run skips finished methods.
        members, record = context.resumable(
            "local_de", lambda: transfer.local_de(checkpoints[0], target, num_members=num_members, epochs=epochs, **common)
        )
        results["local_de"], member_models["local_de"] = _summary(record), members
        results["local_de"]["val_accuracy"] = _val_accuracy(members, target) if members else None
    first_entry = record["members"][0]
    first = members[0] if first_entry["status"] == "ok" else None
    first_wall, first_cpu = first_entry["wall_s"], first_entry["cpu_s"]
    if pretrain_info["global_de"]:
        with context.stage("global_de"):
            members, record = context.resumable(
                "global_de", lambda: transfer.global_de(checkpoints[:num_members], target, epochs=epochs, **common)
            )
            results["global_de"], member_models["global_de"] = _summary(record), members
    # Member 1 is local DE's member 1: its cost is counted in every cyclic method.
    first_cost = (first_wall, first_cpu) if first is not None else (0.0, 0.0)

    def cyclic_method(method, key, **settings):
        trainer = transfer.sse if method == "sse" else transfer.star_sse
        members, record = context.resumable(
            key, lambda: trainer(checkpoints[0], target, first_member=first, **{**cyclic, **settings}, **common)
        )
        return members, _summary(record, *first_cost)

    # The grid is a dict keyed "0", "1", ... so report paths can address points.
    # Without `fge_grid` it is one point, the configured cycle setting.
    points = config.fge_grid or ((config.fge_lr_factor, config.fge_epochs_factor),)
    soup_results, grid = {}, {}
    with context.stage("grid"):
        for index, (lr_factor, epochs_factor) in enumerate(points):
            point = {"fge_lr_factor": float(lr_factor), "fge_epochs_factor": float(epochs_factor)}
            settings = dict(fge_lr=lr_factor * config.lr, fge_epochs=epochs_factor * epochs)
            for method in ("sse", "star_sse"):
                members, summary = cyclic_method(method, f"{method}_lr{lr_factor}_ep{epochs_factor}", **settings)
                summary["val_accuracy"] = _val_accuracy(members, target) if members else None
                if config.soups and members:
                    summary["soups"] = _soups(members, target, config.batch_size)
                point[method] = summary
                context.log(
                    f"grid fge_lr {lr_factor}x, fge_epochs {epochs_factor}x: {LABELS[method]} val acc "
                    f"{summary['val_accuracy']}, test acc {summary['accuracy']}"
                )
            grid[str(index)] = point
    # Each method at its own best point, chosen on the held-out split (the
    # first point, failures and all, when no point has scored members).
    for method in ("sse", "star_sse"):
        scored = [i for i, p in grid.items() if p[method]["val_accuracy"] is not None]
        best = max(scored, key=lambda i: grid[i][method]["val_accuracy"]) if scored else "0"
        chosen = dict(grid[best][method])
        if "soups" in chosen:
            soup_results[method] = chosen.pop("soups")
        results[method] = {**chosen, "best_point": [grid[best]["fge_lr_factor"], grid[best]["fge_epochs_factor"]]}
    if config.grid_peft or not config.fge_grid:
        lr_factor, epochs_factor = results["star_sse"]["best_point"]
        with context.stage("peft_star_sse"):
            member_models["peft_star_sse"], results["peft_star_sse"] = cyclic_method(
                "peft_star_sse", "peft_star_sse", trainable=config.peft_trainable, last_k=config.peft_last_k,
                fge_lr=lr_factor * config.lr, fge_epochs=epochs_factor * epochs,
            )
        results["peft_star_sse"]["best_point"] = [lr_factor, epochs_factor]

    if config.soups:
        with context.stage("soups"):
            for method, members in member_models.items():
                if not members:
                    continue
                soup_results[method] = _soups(members, target, config.batch_size)
                context.log(
                    f"{LABELS[method]} soups: uniform acc {soup_results[method]['uniform']['accuracy']}, "
                    f"greedy acc {soup_results[method]['greedy']['accuracy']} "
                    f"({len(soup_results[method]['greedy']['ingredients'])} ingredients)"
                )
    peft_ratio = cycles_ratio = None
    if "peft_star_sse" in results:
        star, peft = results["star_sse"], results["peft_star_sse"]
        peft_ratio = peft["wall_s"] / star["wall_s"] if star["wall_s"] > 0 else None
        cycles_ratio = peft["cycles_wall_s"] / star["cycles_wall_s"] if star["cycles_wall_s"] > 0 else None
    return {
        "methods": results,
        "soups": soup_results,
        "grid": grid,
        "peft_time_ratio": peft_ratio,
        "peft_cycles_time_ratio": cycles_ratio,
        "pretrain": pretrain_info,
        "data": {"target": target.summary(), "source": None if source is None else source.summary()},
    }


# === Report ===


def report(records, out_dir):
    written = []
    for runs in by_preset(records):
        config, preset, cell = runs.config, runs.preset, runs.cell
        last = runs.runs[-1]["metrics"]
        methods = [m for m in METHODS if m in last["methods"]]
        rows = []
        for m in methods:
            failed = runs.mean(_method(m, "num_failed"))
            rows.append([
                LABELS[m] + (f" ({failed:.1f} failed members/run)" if failed else ""),
                cell(_method(m, "avg_member_accuracy"), 100), cell(_method(m, "diversity"), digits=1),
                cell(_method(m), 100), cell(_method(m, "calibrated_nll"), digits=3), cell(_method(m, "wall_s"), digits=0),
                *("—" if v is None else f"{v:.2f}" for v in SOURCE_NUMBERS.get(m, (None, None, None))),
            ])
        rows += [
            [f"{kind} soup of {LABELS[m]}", "—", "—", cell(_soup(m, kind), 100), cell(_soup(m, kind, "calibrated_nll"), digits=3)] + ["—"] * 4
            for kind in ("uniform", "greedy") for m in methods if runs.stats(_soup(m, kind))["n"]
        ]
        ratio = runs.mean("metrics.peft_time_ratio")
        summary = [_star_cost(runs.runs), "The claims table beside this one judges the sources' claims over the seeds."]
        if ratio is not None:
            summary.insert(0, (
                f"PEFT StarSSE ({config['peft_trainable']}, k={config['peft_last_k']}) takes x{ratio:.2f} the time of "
                f"full StarSSE (x{runs.mean('metrics.peft_cycles_time_ratio'):.2f} for the cycles alone; source 000: x0.74 to x0.55)."
            ))
        grid = [tuple(point) for point in config.get("fge_grid") or ()]
        schedule = f"{config['epochs']} epochs at lr {config['lr']}, batch {config['batch_size']}"
        notes = []
        target = (
            f"fine-tuned on classes {config['target_classes']} from {config['target_train_size']} images; the source "
            "uses an ImageNet ResNet50 on CIFAR-100 at 224x224."
        )
        if config["source"] == "files":
            accuracy = [a for r in runs.runs for a in r["metrics"]["pretrain"]["source_accuracy"]]
            notes.append(
                f"Source networks: the committed `starsse_sources` checkpoints (ResNets trained on {config['dataset']} "
                f"classes {config['source_classes']}; see that experiment's report), each checked against its record "
                f"on load; source test accuracy {100 * min(accuracy):.2f}-{100 * max(accuracy):.2f}%; {target}"
            )
        elif config["dataset"] != "cifar100":
            notes.append(
                f"Small ResNet (stages {config['stages']}, width {config['width']}) pre-trained here at 32x32 on "
                f"{config['dataset']} classes {config['source_classes']} ({config['pretrain_size']} images, "
                f"{config['pretrain_epochs']} epochs), {target}"
            )
        if grid:
            chosen = {
                m: _points(tuple(r["metrics"]["methods"][m]["best_point"]) for r in runs.runs if m in r["metrics"]["methods"])
                for m in ("sse", "star_sse")
            }
            notes.append(
                f"SSE and StarSSE rows: each method at its best point of the grid (fge_lr x lr, fge_epochs x epochs) "
                f"{_points(grid)}, chosen per seed by ensemble accuracy on the held-out split; chosen: SSE "
                f"{chosen['sse']}, StarSSE {chosen['star_sse']} ({schedule}). The source sweeps {_SOURCE_GRID}. "
                "Every point: the grid table."
            )
        else:
            notes.append(
                f"One point of the source's grid: fge_lr = {config['fge_lr_factor']} x lr, fge_epochs = "
                f"{config['fge_epochs_factor']} x epochs ({schedule}); the source sweeps {_SOURCE_GRID}."
            )
        notes += [
            "Augmentation: flip + 4-pixel pad-and-crop at 32x32 (the source: RandomResizedCrop + flip at 224, test "
            "resize 256 / centre crop 224). Keras SGD: decoupled weight decay.",
            "Member 1 of SSE / StarSSE / PEFT StarSSE is local DE's member 1 (fine-tuned once, its time counted in each).",
            f"PEFT row: cycles train the last {config['peft_last_k']} stage(s) and the head; source numbers shown are "
            f"its 'StarSSE (1)' row. All source PEFT rows: {SOURCE_PEFT_VARIANTS}.",
            "Local / global DE and soups: the slides give no numbers for these; source 001 states the qualitative "
            "findings judged in the claims table. Soups recompute BatchNorm statistics on the training images; greedy "
            f"soups select on {config['validation_size']} held-out training images.",
        ]
        if config.get("bn_update", False):
            notes.append(
                "Every member's BatchNorm statistics recomputed on the training images before scoring (`bn_update`); "
                "the source's code scores members with their running statistics."
            )
        if "global_de" not in methods:
            notes.append(
                "Global DE and PEFT StarSSE not run in grid mode (one checkpoint)." if grid
                else "Global DE skipped: no independently pre-trained checkpoints given."
            )
        table = reports.Table(
            title="StarSSE in transfer learning: local / global DE, SSE, StarSSE, PEFT StarSSE and soups",
            columns=[
                "method", "avg member acc. (%)", "diversity", "ens. acc. (%)", "calibrated NLL", "time (s)",
                "source avg acc.", "source div.", "source ens. acc.",
            ],
            rows=rows,
            caption=(
                f"Preset `{preset}`, mean ± std over {runs.n} seed(s); {config['num_members']} members; target "
                f"{last['data']['target']}. Diversity = 100 x mean pairwise disagreement / mean member error. "
                "Time: wall seconds of all members, incl. the shared first fine-tuning. "
                + " ".join(filter(None, summary))
            ),
            source="Sadrtdinov et al. 2023 via source 000 (HSE 2024 slides, ResNet50 / CIFAR-100) and source 001 (AIRI article)",
            footnotes=notes,
        )
        out = Path(out_dir) / NAME / f"{NAME}_{preset}"
        written += reports.write_table(table, out)
        if grid:
            written += reports.write_table(_grid_table(runs, grid), out.with_name(f"{out.name}_grid"))
    return written


def _star_cost(runs):
    """What StarSSE's M members cost per seed, in fine-tunings from its one checkpoint (`runs`: records)."""
    ratios, budgets = [], []
    for run in runs:
        methods, config = run["metrics"]["methods"], run["config"]
        star, local = methods.get("star_sse"), methods.get("local_de")
        if not star or not local or star["num_failed"] or local["num_failed"]:
            continue
        # One fine-tuning: a local DE member's mean CPU time (CPU, not wall:
        # the runs share the machine with others).
        one = local["cpu_s"] / len(local["member_wall_s"])
        factor = star.get("best_point", [None, config["fge_epochs_factor"]])[1]
        members = len(star["member_wall_s"])
        ratios.append(star["cpu_s"] / one)
        budgets.append((members, 1 + (members - 1) * factor))
    if not ratios:
        return ""
    # The schedule's training steps (exact), and the CPU time, which adds each member's evaluation.
    return (
        f"StarSSE with M = {budgets[0][0]} members: its schedule trains "
        f"{', '.join(f'{e:g}' for _, e in budgets)} fine-tuning lengths (per seed) and took "
        f"{', '.join(f'{r:.2f}' for r in ratios)}x the CPU time of one local DE member; every member starts from "
        "checkpoint 0 or from member 1, so no pre-training beyond the one checkpoint."
    )


def _points(points):
    return ", ".join(f"({a:g}, {b:g})" for a, b in points) or "—"


def _grid_table(runs, grid):
    """Every grid point: held-out and test ensemble accuracy of SSE and StarSSE, and their soups."""
    keys = (("val_accuracy", "val. acc."), ("accuracy", "ens. acc."), ("soups.uniform.accuracy", "uniform soup"), ("soups.greedy.accuracy", "greedy soup"))
    methods = ("sse", "star_sse")
    return reports.Table(
        title=f"StarSSE vs SSE over the cycle grid ({runs.preset})",
        columns=["fge_lr (x lr)", "fge_epochs (x epochs)"] + [f"{LABELS[m]} {label} (%)" for m in methods for _, label in keys],
        rows=[
            [f"{lr_factor:g}", f"{epochs_factor:g}"]
            + [runs.cell(f"metrics.grid.{i}.{m}.{key}", scale=100) for m in methods for key, _ in keys]
            for i, (lr_factor, epochs_factor) in enumerate(grid)
        ],
        caption=(
            f"Preset `{runs.preset}`, mean ± std over {runs.n} seed(s). Val. acc.: ensemble accuracy on the held-out "
            "split (the selection score); ens. acc. and soups: test set. Both methods share member 1 (local DE's)."
        ),
        source=f"Sadrtdinov et al. 2023 (grid {_SOURCE_GRID})",
    )


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
