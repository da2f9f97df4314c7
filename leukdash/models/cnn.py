"""The paper's CNN and leukdash's stronger one: build, train, predict, save and load.

Keras and TensorFlow are imported inside the functions, so importing this module stays cheap.

Training speed on a small CPU (measured, see the models report) comes from three choices:
- mixed bfloat16 (about 1.6x): convolutions and dense layers run in bfloat16 on CPUs with
  AVX-512 BF16 or AMX (float32 elsewhere, see ``TRAINING_POLICY``); the weights stay
  float32 and the softmax output is float32. The policy is set only while a model is built
  and restored afterwards, so no other code sees it; a saved model keeps it.
- ``steps_per_execution`` (a few %): several batches per call of the compiled train step, so
  Python is not re-entered for every 32 images.
- uint8 batches into a float32 model: the cast happens inside the compiled step, and an
  augmented training set holds a quarter of the memory.
Each epoch's images reach ``fit`` as a tf.data pipeline of tensors, not through a Python
generator (see :meth:`_EpochBatches.dataset`), and validation is a direct prediction of the
validation images rather than ``evaluate``, whose per-call set-up costs more than predicting 50
images.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
from pathlib import Path

import numpy as np

from leukdash import interrupts


# TensorFlow threads of a CNN fold, fixed whatever the machine: results depend on the thread
# count (measured: the same fold trained with 1 and 2 threads ends at different weights), so a
# fold computes the same on a laptop, a server or a cluster worker. One thread, because a second
# one buys little on these small networks where the CPU has AVX-512 (one allidb2_ufpr fold at 64 px,
# x8, 25 epochs, alone on 2 cores: paper CNN 27.0 s with 2 threads, 33.8 s with 1; leukdash CNN
# 45.7 s and 44.9 s), while two single-threaded folds side by side finish both in 52.3 s against
# 72.7 s for two-thread folds one after another: the pool gets more work done by running more
# folds, one core each. On a 2-core AVX2 EPYC a second thread buys more (a paper-CNN fit 1.8x
# faster), so there one-thread folds side by side only match two-thread folds in turn. (The
# inter-op threads, measured there, leave a fold's weights unchanged; the intra-op ones do not.)
CNN_THREADS = 1


def set_tf_threads(threads: int) -> None:
    """Fix TensorFlow's thread pools; a process whose pools already started keeps them."""
    from leukdash.models.tensorflow_import import import_tensorflow

    tf = import_tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow was initialised earlier in this process (a previous fold set the same counts,
        # or the caller used TensorFlow itself): check instead of silently computing otherwise.
        if tf.config.threading.get_intra_op_parallelism_threads() not in (0, threads):
            raise


def _keras():
    """Keras, with TensorFlow's thread pools fixed before its first use in this process.

    Results depend on the thread count (see :data:`CNN_THREADS`), so every process of leukdash
    that builds, trains or loads a model uses the same one.
    """
    set_tf_threads(CNN_THREADS)
    import keras

    return keras


def native_bfloat16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


ARCHITECTURES = ("paper", "leukdash")
OPTIMIZERS = ("sgd", "adam")

STEPS_PER_EXECUTION = 16
# Mixed bfloat16 where the CPU has it; elsewhere (older x86, Apple silicon) bfloat16 is emulated
# and slower than float32.
TRAINING_POLICY = "mixed_bfloat16" if native_bfloat16() else "float32"
PREDICT_BATCH = 256
# Training images (of the last epoch) used to compute exact batch-norm statistics at the end.
PRECISE_BN_IMAGES = 1024
# Same clipping as Keras' crossentropy, so a confident mistake gives a finite validation loss.
_EPS = 1e-7


def default_learning_rate(architecture: str, optimizer: str) -> float:
    """The learning rate used when the config leaves it unset.

    Paper CNN: Keras' defaults (SGD 0.01, Adam 0.001), as the paper gives no other.
    leukdash CNN: peak rates of its warm-up + cosine schedule.
    """
    _check_choice("architecture", architecture, ARCHITECTURES)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    rates = {("paper", "sgd"): 0.01, ("paper", "adam"): 0.001,
             ("leukdash", "sgd"): 0.05, ("leukdash", "adam"): 0.002}
    return rates[architecture, optimizer]


def build_model(architecture: str, image_size: int, n_classes: int, seed: int = 0):
    """An uncompiled Keras model taking (N, size, size, 3) images in 0..255 (uint8 or float).

    ``"paper"`` is the CNN of Ahmed et al. (2019) layer for layer; ``"leukdash"`` is a small
    all-convolutional network with batch normalisation and global average pooling (see
    :func:`_leukdash`). Weights are initialised from ``seed``.
    """
    keras = _keras()

    _check_choice("architecture", architecture, ARCHITECTURES)
    keras.utils.set_random_seed(seed)
    build = _paper if architecture == "paper" else _leukdash
    return build(keras, image_size, n_classes)


def _paper(keras, image_size: int, n_classes: int):
    layers = keras.layers
    return keras.Sequential([
        keras.Input((image_size, image_size, 3)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.1),
        layers.BatchNormalization(),
        layers.Dense(n_classes, activation="softmax", dtype="float32"),
    ], name="paper")


def _leukdash(keras, image_size: int, n_classes: int):
    """A small all-convolutional network with batch normalisation and global average pooling.

    Widths double as the resolution halves (16 -> 128 channels, size -> size/8). Global
    average pooling instead of the paper's 800k-weight dense layer leaves ~0.1 M parameters
    and makes the output indifferent to where the cell sits; batch normalisation lets it
    train at a high learning rate. For speed on CPUs, pooling comes before normalisation
    (BN and ReLU then touch a quarter of the pixels) and the full-resolution stem has none.
    Predictions average the eight flips and quarter turns of each image (:func:`predict_proba`).
    """
    layers = keras.layers

    def conv_pool_bn(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = conv_pool_bn(x, 32)
    x = conv_pool_bn(x, 64)
    x = layers.Conv2D(128, 3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="leukdash")


def train_cnn(train_images, train_labels, val_images, val_labels, *, n_classes: int,
              architecture: str = "paper", optimizer: str = "sgd", learning_rate: float | None = None,
              epochs: int = 25, batch_size: int = 32, seed: int = 0, epoch_data=None, on_epoch=None):
    """Train a CNN and validate it on untouched images after every epoch.

    Parameters
    ----------
    train_images, val_images : uint8 arrays (N, size, size, 3)
    train_labels, val_labels : int arrays (N,)
    epoch_data : callable ``epoch -> (images, labels)``, optional
        The training set of each epoch (e.g. freshly augmented copies); every epoch must have
        the same number of images. Without it every epoch uses ``train_images``.
    on_epoch : callable ``(epoch, logs)``, optional
        Called after each epoch with ``{"acc", "loss", "val_acc", "val_loss"}``.

    Returns
    -------
    model, history
        ``history`` holds one list per metric (``acc``, ``loss``, ``val_acc``, ``val_loss``)
        with one float per epoch. Validation uses :func:`predict_proba`, i.e. exactly the
        predictions a fold is scored on.

    Notes
    -----
    Before the last validation the batch-norm statistics are recomputed exactly on up to
    ``PRECISE_BN_IMAGES`` images of the last epoch's training set (:func:`_precise_batchnorm`),
    so the returned model and the last ``val_acc`` do not depend on a lagging moving average.
    Optimizers: the paper CNN gets Keras' plain SGD or Adam at a constant rate; the leukdash
    CNN gets SGD (Nesterov momentum 0.9, weight decay) or AdamW with a 10% linear warm-up
    and cosine decay to zero (:func:`_optimizer`).
    """
    keras = _keras()

    _check_choice("optimizer", optimizer, OPTIMIZERS)
    train = _EpochBatches(train_images, train_labels, epoch_data, batch_size, seed)
    with _dtype_policy(TRAINING_POLICY):
        model = build_model(architecture, train.image_size, n_classes, seed)
    lr = learning_rate or default_learning_rate(architecture, optimizer)
    model.compile(
        optimizer=_optimizer(keras, architecture, optimizer, lr, epochs * len(train)),
        loss="sparse_categorical_crossentropy",
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],  # "accuracy" for sparse labels
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    # The optimizer's slots (and the metric above, made by its constructor) exist before the
    # first fit: variables created while TensorFlow traces the train step make it trace the step
    # twice (measured on a 2-core AVX2 EPYC: a test-sized leukdash-CNN fold 4.8 s, now 3.0-3.9 s).
    model.optimizer.build(model.trainable_variables)
    history = {"acc": [], "loss": [], "val_acc": [], "val_loss": []}
    val_labels = np.asarray(val_labels, dtype=np.int64)

    class Record(keras.callbacks.Callback):
        # A stop swallowed where it landed (a weakref callback, while TensorFlow trains) ends the training at the
        # next batch; at its begin, as Keras calls it in this thread and without waiting for the batch before.
        def on_train_batch_begin(self, batch, logs=None):
            interrupts.check()

        def on_epoch_end(self, epoch, logs=None):
            if epoch == epochs - 1:
                _precise_batchnorm(self.model, train.x[:PRECISE_BN_IMAGES])
            proba = predict_proba(self.model, val_images, batch_size)
            row = {
                "acc": float(logs["accuracy"]),
                "loss": float(logs["loss"]),
                "val_acc": float(np.mean(proba.argmax(axis=1) == val_labels)),
                "val_loss": float(-np.mean(np.log(np.clip(proba[np.arange(len(proba)), val_labels], _EPS, 1.0)))),
            }
            for name, value in row.items():
                history[name].append(value)
            if on_epoch is not None:
                on_epoch(epoch, row)
            interrupts.check()

    for epoch in range(epochs):
        model.fit(train.dataset(epoch), epochs=epoch + 1, initial_epoch=epoch, shuffle=False,  # the batches come shuffled
                  callbacks=[Record()], verbose=0)
        gc.collect()  # free this epoch's pipeline and its images before the next one is made (peak memory)
    return model, history


class _EpochBatches:
    """Each epoch's training set, shuffled, in uint8 batches for that epoch's ``fit``."""

    def __init__(self, images, labels, epoch_data, batch_size: int, seed: int):
        self.images, self.labels = _as_uint8(images), np.asarray(labels, dtype=np.int64)
        self.epoch_data = epoch_data
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.size = None
        self._load(0)  # up front: the model is built for the size of these images
        self.image_size = self.x.shape[1]

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def _load(self, epoch: int) -> None:
        if self.epoch_data is None:
            images, labels = self.images, self.labels
        else:
            images, labels = self.epoch_data(epoch)
            images, labels = _as_uint8(images), np.asarray(labels, dtype=np.int64)
        if self.size is None:
            self.size = len(images)
        elif len(images) != self.size:
            raise ValueError(f"epoch_data({epoch}) gave {len(images)} images, epoch 0 had {self.size}: "
                             "every epoch must have the same number")
        order = self.rng.permutation(self.size)
        self.x, self.y = images[order], labels[order]

    def dataset(self, epoch: int):
        """The batches of epoch ``epoch`` (0, 1, ... in turn) as a tf.data pipeline of tensor slices.

        The batches come in an order drawn from Python's ``random`` (which ``build_model`` seeds),
        with the same calls in the same sequence as Keras' ``PyDataset`` made when it fed engine
        version 3's runs, so a fold trains to the same weights bit for bit (checked on folds with
        and without a short last batch). The ``PyDataset`` ran a Python generator in TensorFlow's
        prefetch threads, against the training threads: measured on a 2-core AVX2 EPYC, a paper-CNN
        epoch took 1.3-1.4x as long, and ``fit`` calls made after it in the same process were
        still 1.6x slower.
        """
        from leukdash.models.tensorflow_import import import_tensorflow

        tf = import_tensorflow()
        if epoch > 0:
            self._load(epoch)
        order = list(range(len(self)))
        random.shuffle(order)
        # tf.identity copies the images once; tf.constant holds them twice (measured)
        x, y, size = tf.identity(self.x), tf.identity(self.y), self.batch_size
        return tf.data.Dataset.from_tensor_slices(tf.constant(order, tf.int64)).map(
            lambda i: (x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]))


def _precise_batchnorm(model, images) -> None:
    """Set every BatchNormalization layer's inference statistics to the exact mean and variance
    of its inputs over ``images`` under the final weights ("precise BN", Wu & Johnson 2021).

    Keras keeps an exponential moving average (momentum 0.99, about the last 100 batches) that
    lags behind weights still moving fast under heavy augmentation; measured on ALL-IDB2 with
    the paper's CNN it sat 0.8 standard deviations off and flipped whole validation folds to
    one class. Layers are done in order, so each sees the corrected layers before it.
    """
    keras = _keras()

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            probe = keras.Model(model.inputs, layer.input)
            x = np.concatenate([np.asarray(probe.predict_on_batch(images[i:i + PREDICT_BATCH]), dtype=np.float64)
                                for i in range(0, len(images), PREDICT_BATCH)])
            x = x.reshape(-1, x.shape[-1])
            # A diverged model's activations overflow float32: the run says it diverged, in one line.
            with np.errstate(over="ignore", invalid="ignore"):
                layer.moving_mean.assign(x.mean(axis=0).astype(np.float32))
                layer.moving_variance.assign(x.var(axis=0).astype(np.float32))


def adapted(model, images):
    """A copy of ``model`` whose batch-normalisation statistics are those of ``images``, one lab's
    images (AdaBN; Li et al., 2016): the weights stay, each normalised layer re-centres on the new
    lab's activations instead of the training set's. No label is used; up to
    ``PRECISE_BN_IMAGES`` images, spread evenly over the batch, are read.

    Another lab's stain and camera shift what every layer sees; a CNN normalising it with the
    training set's statistics can give every image one class. It assumes a class mix like the
    training set's, as :func:`leukdash.models.classic.adapted` does.
    """
    keras = _keras()

    images = _as_uint8(images)
    spread = np.unique(np.linspace(0, len(images) - 1, min(len(images), PRECISE_BN_IMAGES)).astype(int))
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    _precise_batchnorm(copy, images[spread])
    return copy


def _optimizer(keras, architecture: str, name: str, lr: float, total_steps: int):
    """The paper's plain optimizers, or leukdash's with warm-up + cosine decay and weight decay."""
    if architecture == "paper":
        return keras.optimizers.SGD(lr) if name == "sgd" else keras.optimizers.Adam(lr)
    warmup = max(1, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10, decay_steps=max(1, total_steps - warmup),
        warmup_target=lr, warmup_steps=warmup,
    )
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return keras.optimizers.AdamW(schedule, weight_decay=0.05)


def predict_proba(model, images, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Class probabilities (N, n_classes), float64 rows summing to 1.

    The leukdash architecture averages its predictions over the eight symmetries of the
    square (flips and quarter turns): a cell has no preferred orientation, and the average
    is steadier than any single view.
    """
    images = _as_uint8(images)
    views = _dihedral if model.name == "leukdash" else (lambda x: [x])
    chunk = max(1, batch_size)
    out = []
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        variants = views(part)
        proba = np.asarray(model.predict_on_batch(np.concatenate(variants)), dtype=np.float64)
        out.append(proba.reshape(len(variants), len(part), -1).mean(axis=0))
    if not out:
        return np.zeros((0, model.output_shape[-1]))
    proba = np.concatenate(out)
    return proba / proba.sum(axis=1, keepdims=True)


def _dihedral(images: np.ndarray) -> list[np.ndarray]:
    turns = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    return turns + [t[:, :, ::-1] for t in turns]


def save_model(model, path) -> Path:
    """Save a model in the Keras format (``.keras`` is appended when missing)."""
    path = Path(path)
    if path.suffix != ".keras":
        path = path.with_name(path.name + ".keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def load_model(path):
    """A model saved by :func:`save_model`, ready for :func:`predict_proba`."""
    keras = _keras()

    return keras.models.load_model(Path(path), compile=False)


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Build layers under a Keras dtype policy, then restore the previous global policy."""
    keras = _keras()

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _as_uint8(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return images


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        from leukdash.errors import ConfigError

        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
