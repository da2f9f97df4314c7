"""Grad-CAM points at the region that drives a prediction."""

import numpy as np

from leukdash.evaluation.predict import gradcam_map


def test_gradcam_highlights_the_region_the_class_depends_on():
    import keras

    # A model whose class-1 score grows with the amount of red: its only feature map is the
    # red channel, so Grad-CAM for class 1 must light up where the image is red.
    inputs = keras.Input((32, 32, 3))
    red = keras.layers.Conv2D(1, 1, activation="relu", kernel_initializer=keras.initializers.Constant([[[[1.0], [0.0], [0.0]]]]),
                              bias_initializer="zeros")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(red)
    outputs = keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.Constant([[-1.0, 1.0]]),
                                 bias_initializer="zeros")(pooled)
    model = keras.Model(inputs, outputs)
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[0, 8:16, 18:28, 0] = 1.0
    heatmap = gradcam_map(model, image, class_index=1)
    assert heatmap.shape == (32, 32)
    inside = heatmap[8:16, 18:28]
    assert inside.min() > 0 and np.count_nonzero(heatmap) == inside.size
    assert np.unravel_index(heatmap.argmax(), heatmap.shape)[0] in range(8, 16)
