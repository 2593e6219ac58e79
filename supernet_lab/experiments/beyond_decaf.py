"""Beyond the thesis: DeCAF-style frozen features vs fine-tuning of the thesis's CIFAR-10 CNN.

Source: the transfer-learning lecture (seed 002): "collect activations in a
given layer" of a trained net and fit a linear classifier on them (DeCAF,
Donahue et al. 2014: logistic regression / SVM on DeCAF5-7), against
adapting the pre-trained model ("fine-tuning": freeze some layers, retrain
the others).

Protocol. The thesis's Table-2 CNN (`supernet.models.thesis_cnn`) is
trained on a *source* task, CIFAR-10's first five classes (airplane,
automobile, bird, cat, deer), then transferred to the *target* task, the
other five (dog, frog, horse, ship, truck), from a small labelled target
set. For the net's hidden layers we take the output of its 1st,
penultimate (2nd) and last (3rd) convolutional block (after pooling,
flattened: 8192, 4096 and 2048 features for 32x32 inputs):

- linear probes (`supernet.baselines.fit_linear_probe`): standardised
  features, scikit-learn `LogisticRegression` and `LinearSVC`;
- fine-tuning (`supernet.baselines.freeze_first`): the source net with a
  fresh 5-class softmax head, layers up to that block frozen (BatchNorm
  frozen too), the rest trained with Adam;
- references: fine-tuning every layer, and the same CNN trained from
  scratch on the target set.

Scores are accuracy on held-out target-class test images.

Presets:
- `smoke`: synthetic 16x16x3 data, 1 epoch (seconds).
- `cpu`: a 10,000-image stratified CIFAR-10 subset (`data.load` keeps
  2,000 test images with it): source = its 4,750 training images of
  classes 0-4, 5 epochs; target = 1,000 training images of classes 5-9 and
  all ~1,000 target-class test images; fine-tuning 8 epochs. Measured on
  this machine (2 cores shared with other runs, load ~6): one source epoch
  40 s wall / 23 s CPU, one fine-tuning epoch on 1,000 images 6-14 s wall
  (fewer when more layers are frozen), linear probes (C = 0.01) up to ~50 s
  wall each on the 8,192 first-block features. About 8 min of CPU time per
  seed, ~12-15 min wall at that load.
- `paper`: all 50,000 training images (source 22,500 after the
  validation split, 30 epochs), 5,000 target training images, all 5,000
  target test images, 20 epochs.
"""

import dataclasses

import keras
import numpy as np
from threadpoolctl import threadpool_limits

from supernet_lab.experiments._beyond import class_task
from supernet_lab.experiments._common import DataConfig, bn_momentum_notes, by_preset, load_dataset
from supernet_lab.findings import Claim
from supernet import metrics, reports
from supernet.baselines import fit_linear_probe, freeze_first, layer_features
from supernet.models import thesis_cnn

NAME = "beyond_decaf"
DESCRIPTION = "Logistic regression / linear SVM on frozen CIFAR-10 CNN features vs fine-tuning (DeCAF)"
REPRODUCES = "beyond the thesis: transfer-learning lecture (seed 002), DeCAF table"

LAYER_LABELS = ("1st block", "penultimate block", "last block")
CLASSIFIERS = (("logistic", "logistic regression"), ("svm", "linear SVM"))


@dataclasses.dataclass(frozen=True)
class Config(DataConfig):
    """CIFAR-10 (`DataConfig`), its source and target classes, and the source net, probes and fine-tuning."""

    dataset: str = "cifar10"
    validation_size: object = 500
    source_classes: tuple = (0, 1, 2, 3, 4)
    target_classes: tuple = (5, 6, 7, 8, 9)
    feature_layers: tuple = ("block1_pool", "block2_pool", "block3_pool")
    source_epochs: int = 30
    target_train_size: int = 5000
    target_test_size: object = None
    finetune_epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    # Strong L2 (n < d for the early blocks); also makes the solvers converge.
    probe_C: float = 0.01
    probe_max_iter: int = 1000
    # BatchNormalization momentum (Keras default 0.99); the `cpu` preset's
    # fine-tuning and from-scratch runs are ~130 steps, which need 0.9.
    bn_momentum: float = 0.99


PRESETS = {
    "smoke": Config(
        dataset="synthetic",
        dataset_kwargs=(("num_classes", 10), ("input_shape", (16, 16, 3)), ("num_train", 400), ("num_test", 200)),
        validation_size=0.1, source_epochs=1, target_train_size=100, target_test_size=100, finetune_epochs=1, probe_max_iter=200,
    ),
    "cpu": Config(subset=10000, source_epochs=5, target_train_size=1000, finetune_epochs=8, probe_max_iter=500, bn_momentum=0.9),
    "paper": Config(),
}

# DeCAF's table in the source (Caltech-101, 30 training images per class): accuracy % on DeCAF5 and DeCAF7.
SOURCE_DECAF = {"logistic": (63.29, 84.87), "svm": (77.12, 83.24)}
_FIRST, _LAST = Config.feature_layers[0], Config.feature_layers[-1]

CLAIMS = tuple(
    Claim(
        f"later_layers_transfer_better_{c}",
        f"Activations of later layers are better features: a {label} on the last block's features beats one on the "
        f"1st block's (DeCAF, {label}: {SOURCE_DECAF[c][0]}% on DeCAF5, {SOURCE_DECAF[c][1]}% on DeCAF7).",
        "source 002 (DeCAF quantitative analysis table; Donahue et al. 2014)",
        f"metrics.probes.{_LAST}.{c}.accuracy", minus=f"metrics.probes.{_FIRST}.{c}.accuracy",
        source_value=(SOURCE_DECAF[c][1] - SOURCE_DECAF[c][0]) / 100,
        label=f"{label}, last - 1st block features, target test accuracy", scale=100, unit=" points",
    )
    for c, label in CLASSIFIERS
)


def _task(x, y, classes, size, seed):
    """The samples of `classes`, relabelled 0..len-1, at most `size` of them (seeded, in their order)."""
    x, y = class_task(x, y, classes)
    keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:size]) if size is not None else slice(None)
    return x[keep], y[keep]


def _new_head(source, num_classes, seed):
    """A copy of `source` with its softmax layer replaced by a fresh one."""
    copy = keras.models.clone_model(source)
    copy.set_weights(source.get_weights())
    head = keras.layers.Dense(num_classes, activation="softmax", name="target_predictions",
                              kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    return keras.Sequential([keras.Input(source.input_shape[1:])] + copy.layers[:-1] + [head], name="finetuned")


def _train(model, x, y, config, epochs):
    model.compile(keras.optimizers.Adam(config.learning_rate), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=config.batch_size, verbose=0)


def _accuracy(model, x, y):
    return metrics.accuracy(y, model.predict(x, verbose=0, batch_size=512))


def main(config, context):
    ds = load_dataset(config)
    context.log(ds.summary())
    x_src, y_src = class_task(ds.x_train, ds.y_train, config.source_classes)
    x_src_test, y_src_test = class_task(ds.x_test, ds.y_test, config.source_classes)
    x_tgt, y_tgt = _task(ds.x_train, ds.y_train, config.target_classes, config.target_train_size, config.seed)
    x_tgt_test, y_tgt_test = _task(ds.x_test, ds.y_test, config.target_classes, config.target_test_size, config.seed + 1)
    context.log(f"source: {len(x_src)} train; target: {len(x_tgt)} train, {len(x_tgt_test)} test")
    target_classes = len(config.target_classes)
    result = {"sizes": {"source_train": len(x_src), "target_train": len(x_tgt), "target_test": len(x_tgt_test)}}

    with context.stage("train_source"):
        keras.utils.set_random_seed(config.seed)
        source = thesis_cnn(input_shape=ds.input_shape, num_classes=len(config.source_classes), bn_momentum=config.bn_momentum)
        _train(source, x_src, y_src, config, config.source_epochs)
        result["source_test_accuracy"] = _accuracy(source, x_src_test, y_src_test)
        context.log(f"  source-task test accuracy {result['source_test_accuracy']:.4f}")

    probes = {}
    with context.stage("linear_probes"):
        for layer in config.feature_layers:
            f_train = layer_features(source, layer, x_tgt)
            f_test = layer_features(source, layer, x_tgt_test)
            for classifier, label in CLASSIFIERS:
                # One BLAS thread: on a shared 2-core machine more threads only contend (10x slower measured).
                with threadpool_limits(1):
                    fit = fit_linear_probe(f_train, y_tgt, f_test, y_tgt_test, classifier=classifier,
                                           C=config.probe_C, max_iter=config.probe_max_iter, seed=config.seed)
                fit.pop("pipeline")
                probes.setdefault(layer, {})[classifier] = fit
                context.log(f"  {label} on {layer} ({fit['num_features']} features): accuracy {fit['accuracy']:.4f}")
    result["probes"] = probes

    finetune = {}
    with context.stage("fine_tune"):
        for layer in (*config.feature_layers, None):
            keras.utils.set_random_seed(config.seed + 1)
            model = _new_head(source, target_classes, config.seed + 1)
            trainable = freeze_first(model, layer if layer is not None else 0)
            _train(model, x_tgt, y_tgt, config, config.finetune_epochs)
            key = layer or "all"
            finetune[key] = {"accuracy": _accuracy(model, x_tgt_test, y_tgt_test), "trainable_params": trainable}
            context.log(f"  fine-tune above {key}: {trainable} trainable parameters, accuracy {finetune[key]['accuracy']:.4f}")
    result["fine_tune"] = finetune

    with context.stage("scratch"):
        keras.utils.set_random_seed(config.seed + 2)
        scratch = thesis_cnn(input_shape=ds.input_shape, num_classes=target_classes, bn_momentum=config.bn_momentum)
        _train(scratch, x_tgt, y_tgt, config, config.finetune_epochs)
        result["scratch_accuracy"] = _accuracy(scratch, x_tgt_test, y_tgt_test)
        context.log(f"  from scratch on the target set: accuracy {result['scratch_accuracy']:.4f}")
    return result


def report(records, out_dir):
    """The DeCAF table per preset: rows = feature layer, columns = method."""
    written = []
    for runs in by_preset(records):
        config, preset, mean = runs.config, runs.preset, runs.mean
        layers = config["feature_layers"]
        rows = [
            [
                f"{label} (`{layer}`)",
                f"{mean(f'metrics.probes.{layer}.logistic.num_features'):,.0f}",
                *(runs.cell(f"metrics.probes.{layer}.{c}.accuracy", scale=100) for c, _ in CLASSIFIERS),
                runs.cell(f"metrics.fine_tune.{layer}.accuracy", scale=100),
                f"{mean(f'metrics.fine_tune.{layer}.trainable_params'):,.0f}",
            ]
            for layer, label in zip(layers, LAYER_LABELS)
        ]
        rows.append(["fine-tune all layers", "—", "—", "—", runs.cell("metrics.fine_tune.all.accuracy", scale=100),
                     f"{mean('metrics.fine_tune.all.trainable_params'):,.0f}"])
        rows.append(["train from scratch on the target set", "—", "—", "—", runs.cell("metrics.scratch_accuracy", scale=100), "all"])

        probes = {(layer, c): mean(f"metrics.probes.{layer}.{c}.accuracy") for layer in layers for c, _ in CLASSIFIERS}
        methods = {f"{label} on {block}": probes[layer, c] for layer, block in zip(layers, LAYER_LABELS) for c, label in CLASSIFIERS}
        methods.update({f"fine-tuning above the {block}": mean(f"metrics.fine_tune.{layer}.accuracy") for layer, block in zip(layers, LAYER_LABELS)})
        methods["fine-tuning all layers"] = mean("metrics.fine_tune.all.accuracy")
        methods["training from scratch"] = mean("metrics.scratch_accuracy")
        best = max(methods, key=methods.get)
        best_probe = max(probes.values())
        deeper = ", ".join(f"{100 * (probes[layers[-1], c] - probes[layers[0], c]):+.2f} points ({label})" for c, label in CLASSIFIERS)
        finding = (
            f"Best: {best} ({100 * methods[best]:.2f}%). Linear probes on the last block vs the 1st block: {deeper}; "
            "the claims table beside this one judges them over the seeds. Best linear probe vs fine-tuning all layers: "
            f"{100 * (best_probe - methods['fine-tuning all layers']):+.2f} points; vs training from scratch: "
            f"{100 * (best_probe - methods['training from scratch']):+.2f} points."
        )
        table = reports.Table(
            title=f"DeCAF-style transfer: frozen CIFAR-10 CNN features vs fine-tuning ({preset})",
            columns=["features of", "features", "logistic regression %", "linear SVM %", "fine-tune above this layer %", "trainable params"],
            rows=rows,
            caption=(
                f"Preset `{preset}`, mean ± std over {runs.n} seed(s); target-task test accuracy "
                f"(5 classes, chance 20%). {finding}"
            ),
            footnotes=bn_momentum_notes(config) + [
                f"Source task: {config['dataset']} classes {list(config['source_classes'])}, thesis Table-2 CNN trained "
                f"{config['source_epochs']} epochs (Adam lr {config['learning_rate']}, batch {config['batch_size']}); "
                f"source-task test accuracy {runs.cell('metrics.source_test_accuracy', scale=100)}%.",
                f"Target task: classes {list(config['target_classes'])}, {config['target_train_size']} training and "
                f"{runs.runs[-1]['metrics']['sizes']['target_test']} test images (training images from the "
                f"{config['subset'] or 'full'} training subset).",
                f"Linear probes: block output after pooling, flattened, standardised; scikit-learn LogisticRegression / "
                f"LinearSVC, C = {config['probe_C']}, max_iter {config['probe_max_iter']}.",
                f"Fine-tuning: source weights, fresh softmax head, layers up to the block frozen (BatchNorm statistics "
                f"too), {config['finetune_epochs']} epochs with Adam; 'from scratch': same CNN, random init, same epochs.",
                "DeCAF (Donahue et al. 2014) uses ImageNet features on other datasets; here source and target are two "
                "halves of CIFAR-10. Not in the thesis.",
            ],
        )
        written += reports.write_table(table, out_dir / NAME / f"{NAME}_{preset}")
    return written


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
