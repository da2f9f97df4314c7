"""Where a CNN run looked: Grad-CAM heatmaps of its fold models, for the Predict page."""

from __future__ import annotations

import numpy as np

from leukdash.data.preprocess import prepare_view
from leukdash.engine.store import RunStore
from leukdash.errors import RunError
from leukdash.evaluation.predict import FoldEnsemble, ensemble


def gradcam(run_id: str, image: np.ndarray, store: RunStore | None = None,
            models: FoldEnsemble | None = None) -> np.ndarray:
    """Grad-CAM heatmap (H, W) in [0, 1] for the predicted class, averaged over the fold models:
    the run's, or ``models``, its models adapted to a lab (:func:`~leukdash.evaluation.predict.adapted_models`),
    so that the heatmap explains the answer shown.

    The map is in the image's own pixels: the map of the square the models saw, carried back
    through its padding (``raw``) or the cell's crop and placement (a cell mode), 0 on the pixels
    the models did not see (outside the cell's bounding box)."""
    models = models if models is not None else ensemble(run_id, store)
    if not isinstance(models, FoldEnsemble) or not models.config.is_cnn:
        raise RunError(f"run {run_id!r} is not a CNN run: Grad-CAM needs convolution layers")
    # The models' own preparation (prepare_images), with where its square shows the image.
    square, _, view = prepare_view(image, models.config.image_size, models.config.preprocess)
    batch = square[None]
    predicted = int(models.batch_probabilities(batch).mean(axis=0)[0].argmax())
    heatmap = np.mean([gradcam_map(probe, batch, predicted) for probe in probes(models)], axis=0)
    heatmap = view.to_picture(heatmap, image.shape)
    return heatmap / heatmap.max() if heatmap.max() > 0 else heatmap


def probes(models: FoldEnsemble) -> list:
    """The :func:`gradcam_probe` of each of ``models``' fold models, built on the first Grad-CAM and
    kept with them (``gradcam_probes``), so bounded as the loaded runs are: Keras never frees a model
    it built, and a probe built per call grew a dashboard server by about 25 KB a fold model, for
    good. An adapted copy holds other fold models (another list): it builds its own."""
    kept = models.gradcam_probes
    if kept is None or kept[0] is not models.models:
        kept = models.gradcam_probes = (models.models, [gradcam_probe(model) for model in models.models])
    return kept[1]


def gradcam_probe(model):
    """A Keras model of ``model``'s own layers that gives its last convolutional feature maps
    (not a pooling's) beside its class probabilities: what :func:`gradcam_map` differentiates."""
    import keras

    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    if isinstance(model, keras.Sequential):
        # A loaded Sequential model has no symbolic graph: trace one through its layers.
        inputs = x = keras.Input(model.input_shape[1:])
        traced = []
        for layer in model.layers:
            x = layer(x)
            traced.append((layer, x))
        outputs = x
    else:
        inputs, outputs = model.inputs, model.outputs[0]
        traced = [(layer, layer.output) for layer in model.layers[1:]]
    feature_maps = [t for layer, t in traced if len(t.shape) == 4 and not isinstance(layer, pooling)][-1]
    return keras.Model(inputs, [feature_maps, outputs])


def gradcam_map(probe, batch: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of one model, through its :func:`gradcam_probe`, for one image: the last convolutional
    feature maps, each weighted by the mean gradient of the class probability over it, summed and rectified.

    Returns the map at the feature maps' resolution (h, w), not normalised.
    """
    import tensorflow as tf

    inputs = tf.convert_to_tensor(batch.astype(np.float32))
    with tf.GradientTape() as tape:
        features, proba = probe(inputs, training=False)
        score = tf.cast(proba, tf.float32)[:, class_index]
    # Mixed-precision models give bfloat16 maps: the weighting is done in float32.
    gradients = tf.cast(tape.gradient(score, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))[0].numpy()
