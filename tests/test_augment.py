"""The seven transforms: determinism, each transform alone doing only what it should, expansion."""

from dataclasses import replace

import numpy as np
import pytest

from leukdash.engine.augment import augment_batch, augment_image, expand, preview, random_transform
from leukdash.config import AugmentConfig
from leukdash.errors import ConfigError

SIZE = 64


def only(**settings) -> AugmentConfig:
    """A config with every transform off except the given ones."""
    return AugmentConfig(**{**AugmentConfig.off().to_dict(), **settings})


def textured(n: int = 4, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def square(size: int = SIZE, half: int = 6, centre=None) -> np.ndarray:
    """A black image with one white square."""
    cy, cx = centre if centre is not None else (size // 2, size // 2)
    image = np.zeros((size, size, 3), np.uint8)
    image[cy - half:cy + half, cx - half:cx + half] = 255
    return image


def disk(size: int = SIZE, radius: float = 14.0) -> np.ndarray:
    """A white disk centred on the image's centre pixel grid."""
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    image = np.zeros((size, size, 3), np.uint8)
    image[(yy - centre) ** 2 + (xx - centre) ** 2 <= radius ** 2] = 255
    return image


def area(images: np.ndarray) -> np.ndarray:
    """Bright area of each image, in pixels (grey levels count fractionally)."""
    return images[..., 0].reshape(len(images), -1).sum(axis=1) / 255.0


def centroid(images: np.ndarray) -> np.ndarray:
    """(N, 2) intensity-weighted (x, y) centroid of each image."""
    weights = images[..., 0].astype(float)
    yy, xx = np.mgrid[:images.shape[1], :images.shape[2]]
    total = weights.sum(axis=(1, 2))
    return np.stack([(weights * xx).sum(axis=(1, 2)) / total, (weights * yy).sum(axis=(1, 2)) / total], axis=1)


def test_same_seed_same_batch_and_different_seeds_differ():
    images = textured()
    cfg = AugmentConfig()
    first = augment_batch(images, cfg, 7)
    assert np.array_equal(first, augment_batch(images, cfg, 7))
    assert np.array_equal(first, augment_batch(images, cfg, np.random.default_rng(7)))
    assert not np.array_equal(first, augment_batch(images, cfg, 8))
    by_epoch = [augment_batch(images, cfg, (0, 1, epoch)) for epoch in range(2)]
    assert not np.array_equal(by_epoch[0], by_epoch[1])


def test_batch_equals_images_augmented_in_turn_with_one_generator():
    images = textured(3)
    rng = np.random.default_rng(3)
    one_by_one = np.stack([augment_image(image, AugmentConfig(), rng) for image in images])
    assert np.array_equal(one_by_one, augment_batch(images, AugmentConfig(), 3))


def test_output_keeps_shape_dtype_and_leaves_input_untouched():
    images = textured(2)[:, :40, :56]  # non-square, non-contiguous view
    before = images.copy()
    out = augment_batch(images, AugmentConfig(), 0)
    assert out.shape == (2, 40, 56, 3) and out.dtype == np.uint8
    assert np.array_equal(images, before)
    assert augment_image(images[0], AugmentConfig(), np.random.default_rng(0)).shape == (40, 56, 3)


def test_all_off_is_an_exact_copy():
    images = textured()
    out = augment_batch(images, AugmentConfig.off(), 0)
    assert np.array_equal(out, images) and not np.shares_memory(out, images)
    assert np.array_equal(random_transform(np.random.default_rng(0), AugmentConfig.off(), 9, 5), np.eye(2, 3))


def test_horizontal_flip_only_mirrors_left_right_or_not_at_all():
    images = np.repeat(textured(1), 32, axis=0)
    out = augment_batch(images, only(horizontal_flip=True), 0)
    flipped = np.array([np.array_equal(o, np.fliplr(images[0])) for o in out])
    kept = np.array([np.array_equal(o, images[0]) for o in out])
    assert np.all(flipped | kept) and flipped.any() and kept.any()


def test_vertical_flip_only_mirrors_top_bottom_or_not_at_all():
    images = np.repeat(textured(1), 32, axis=0)
    out = augment_batch(images, only(vertical_flip=True), 1)
    flipped = np.array([np.array_equal(o, np.flipud(images[0])) for o in out])
    kept = np.array([np.array_equal(o, images[0]) for o in out])
    assert np.all(flipped | kept) and flipped.any() and kept.any()


def test_the_two_flips_are_drawn_independently():
    image = textured(1)[0]
    out = augment_batch(np.repeat(image[None], 32, axis=0), only(horizontal_flip=True, vertical_flip=True), 2)
    variants = [image, np.fliplr(image), np.flipud(image), np.flipud(np.fliplr(image))]
    counts = [sum(np.array_equal(o, v) for o in out) for v in variants]
    assert sum(counts) == 32 and min(counts) > 0


def test_switching_a_transform_off_keeps_the_draws_of_the_others():
    images = np.repeat(textured(1), 16, axis=0)
    horizontal = augment_batch(images, only(horizontal_flip=True), 5)
    both = augment_batch(images, only(horizontal_flip=True, vertical_flip=True), 5)
    for h, b in zip(horizontal, both):
        assert np.array_equal(h, b) or np.array_equal(np.flipud(h), b)


def test_rotation_keeps_a_centred_disk_and_turns_an_offcentre_spot_within_the_range():
    cfg = only(rotation=40.0)
    disks = augment_batch(np.repeat(disk()[None], 16, axis=0), cfg, 0)
    assert np.allclose(area(disks), area(disk()[None]), rtol=0.02)
    spot = square(half=2, centre=(SIZE // 2, SIZE // 2 + 20))
    out = augment_batch(np.repeat(spot[None], 64, axis=0), cfg, 0)
    offset = centroid(out) - (SIZE - 1) / 2  # from the image centre; the spot starts at (20, 0)
    radius = np.hypot(offset[:, 0], offset[:, 1])
    angle = np.degrees(np.arctan2(offset[:, 1], offset[:, 0]))
    assert np.allclose(radius, 20, atol=0.5)
    assert np.abs(angle).max() <= 40.5 and np.abs(angle).max() > 30  # uses most of the range
    assert angle.min() < 0 < angle.max()


@pytest.mark.parametrize("axis, setting", [(0, "width_shift"), (1, "height_shift")])
def test_shift_moves_a_square_at_most_the_fraction_along_its_axis_only(axis, setting):
    fraction = 0.25
    image = square()
    out = augment_batch(np.repeat(image[None], 64, axis=0), only(**{setting: fraction}), 0)
    moved = centroid(out) - centroid(image[None])[0]
    assert np.abs(moved[:, axis]).max() <= fraction * SIZE + 0.5
    assert np.abs(moved[:, axis]).max() > 0.6 * fraction * SIZE
    assert np.allclose(moved[:, 1 - axis], 0, atol=1e-6)
    assert np.allclose(area(out), area(image[None]), rtol=0.01)


def test_zoom_scales_area_within_the_keras_range_per_axis():
    z = 0.3
    image = square(half=8)
    out = augment_batch(np.repeat(image[None], 64, axis=0), only(zoom=z), 0)
    ratio = area(out) / area(image[None])
    # Keras samples the grid at scale zx, zy in [1-z, 1+z]: content scales by 1/zx, 1/zy.
    assert ratio.min() >= 1 / (1 + z) ** 2 * 0.95 and ratio.max() <= 1 / (1 - z) ** 2 * 1.05
    assert ratio.min() < 0.8 and ratio.max() > 1.4
    assert np.allclose(centroid(out), centroid(image[None]), atol=0.5)  # about the centre
    bright = out[..., 0] > 127
    widths, heights = bright.any(axis=1).sum(axis=1), bright.any(axis=2).sum(axis=1)
    assert np.any(np.abs(widths - heights) >= 3)  # zx and zy are drawn independently


def test_shear_keeps_rows_straight_and_scales_area_by_at_most_one_over_cos():
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[28:36, 8:56] = 255  # a horizontal bar
    out = augment_batch(np.repeat(image[None], 32, axis=0), only(shear=20.0), 0)
    ratio = area(out) / area(image[None])
    assert ratio.min() >= 0.99 and ratio.max() <= 1 / np.cos(np.radians(20)) * 1.01
    assert not np.array_equal(out[0], image)
    # Shear slides x in proportion to y: the bar stays within a few rows of where it was.
    rows = np.nonzero(out[..., 0].max(axis=(0, 2)) > 0)[0]
    assert rows.min() >= 26 and rows.max() <= 37


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect"])
def test_nearest_and_reflect_fill_leave_no_black_pixels(fill_mode):
    images = np.random.default_rng(0).integers(60, 256, (16, SIZE, SIZE, 3), dtype=np.uint8)
    out = augment_batch(images, AugmentConfig(fill_mode=fill_mode), 0)
    assert out.min() >= 60


def test_constant_fill_is_black():
    images = np.full((8, SIZE, SIZE, 3), 200, np.uint8)
    out = augment_batch(images, only(width_shift=0.4, fill_mode="constant"), 0)
    assert (out == 0).all(axis=-1).any(axis=(1, 2)).sum() >= 6


def test_random_transform_is_a_forward_2x3_matrix():
    matrix = random_transform(np.random.default_rng(0), only(horizontal_flip=True), 10, 20)
    assert matrix.shape == (2, 3) and matrix.dtype == np.float64
    assert np.array_equal(matrix, [[-1, 0, 19], [0, 1, 0]]) or np.array_equal(matrix, np.eye(2, 3))
    shifted = random_transform(np.random.default_rng(0), only(width_shift=0.5), 10, 20)
    assert np.allclose(shifted[:, :2], np.eye(2)) and abs(shifted[0, 2]) <= 10 and shifted[1, 2] == 0


def test_expand_puts_originals_first_then_copies_that_follow_their_source():
    images, labels = textured(3), np.array([0, 1, 1])
    out, out_labels, source = expand(images, labels, 4, AugmentConfig(), seed=2)
    assert out.shape == (12, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:3], images)
    assert np.array_equal(source, np.tile(np.arange(3), 4))
    assert np.array_equal(out_labels, labels[source])
    assert not any(np.array_equal(out[i], images[source[i]]) for i in range(3, 12))
    assert np.array_equal(out[3:], augment_batch(np.concatenate([images] * 3), AugmentConfig(), 2))
    again = expand(images, labels, 4, AugmentConfig(), seed=2)[0]
    assert np.array_equal(out, again)
    single, single_labels, single_source = expand(images, labels, 1, AugmentConfig(), seed=2)
    assert np.array_equal(single, images) and np.array_equal(single_source, [0, 1, 2])


def test_preview_gives_n_distinct_copies_of_the_image():
    image = textured(1)[0]
    copies = preview(image, AugmentConfig(), n=5, seed=1)
    assert len(copies) == 5 and all(c.shape == image.shape and c.dtype == np.uint8 for c in copies)
    assert len({c.tobytes() for c in copies}) == 5
    assert all(np.array_equal(a, b) for a, b in zip(copies, preview(image, AugmentConfig(), n=5, seed=1)))


@pytest.mark.parametrize("bad", [
    np.zeros((2, 8, 8), np.uint8),        # grayscale batch
    np.zeros((2, 8, 8, 4), np.uint8),     # RGBA
    np.zeros((2, 8, 8, 3), np.float32),   # not uint8
    np.zeros((8, 8, 3), np.uint8),        # one image where a batch is expected
    [[[[0, 0, 0]]]],                      # not an array
])
def test_bad_batches_raise_value_error(bad):
    with pytest.raises(ValueError, match="images must"):
        augment_batch(bad, AugmentConfig(), 0)


def test_bad_image_config_factor_and_labels_raise_clear_errors():
    with pytest.raises(ValueError, match=r"image must have shape \(H, W, 3\)"):
        augment_image(np.zeros((8, 8), np.uint8), AugmentConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        preview(np.zeros((8, 8, 3)), AugmentConfig())
    with pytest.raises(ConfigError, match="augment.rotation"):
        augment_batch(textured(1), AugmentConfig(rotation=-5.0), 0)
    with pytest.raises(ConfigError, match="AugmentConfig"):
        augment_batch(textured(1), {"rotation": 10}, 0)
    with pytest.raises(ConfigError, match="augment_factor"):
        expand(textured(2), [0, 1], 0, AugmentConfig(), 0)
    with pytest.raises(ValueError, match="labels"):
        expand(textured(2), [0, 1, 1], 2, AugmentConfig(), 0)
    with pytest.raises(ValueError, match="seed"):
        augment_batch(textured(1), AugmentConfig(), None)


def test_colour_jitter_is_an_optional_eighth_transform():
    from leukdash.config import RunConfig

    assert AugmentConfig().colour_jitter == 0 and "colour_jitter" not in AugmentConfig().enabled()
    # Off, it leaves the canonical form (and so every run id) as it was before it existed.
    assert "colour_jitter" not in RunConfig().canonical()["augment"]
    jittered = RunConfig(augment=AugmentConfig(colour_jitter=0.2))
    assert jittered.canonical()["augment"]["colour_jitter"] == 0.2
    with pytest.raises(ConfigError, match="augment.colour_jitter"):
        AugmentConfig(colour_jitter=0.9).validate()

    rng = np.random.default_rng(0)
    images = rng.integers(1, 255, (4, 24, 24, 3), dtype=np.uint8)
    images[:, :6] = 0      # a black band, as around a segmented cell
    only_jitter = only(colour_jitter=0.3)
    out = augment_batch(images, only_jitter, 5)
    assert (out[:, :6] == 0).all()
    assert np.abs(out.astype(int) - images).mean() > 3   # colours did change
    assert np.array_equal(out, augment_batch(images, only_jitter, 5))
    one_by_one = np.stack([augment_image(image, only_jitter, np.random.default_rng(7)) for image in images[:1]])
    assert np.array_equal(one_by_one, augment_batch(images[:1], only_jitter, np.random.default_rng(7)))
    # Per-image factors: the ratio of red to green moves, which brightness alone would not do.
    def red_over_green(batch):
        middle = batch[:, 8:20].astype(float) + 1
        return np.median(middle[..., 0] / middle[..., 1], axis=(1, 2))

    assert np.ptp(red_over_green(out) / red_over_green(images)) > 0.05


def test_stain_jitter_and_blur_are_optional_and_leave_the_other_draws_alone():
    import cv2

    from leukdash.cli import build_parser
    from leukdash.cli.run_options import config_from_args
    from leukdash.config import RunConfig
    from leukdash.data.preprocess import hematoxylin_density, scale_stains

    # Off: no run id changes.
    assert not {"stain_jitter", "blur"} & set(RunConfig().canonical()["augment"])
    robust = RunConfig(augment=AugmentConfig(stain_jitter=0.2, blur=1.0))
    assert robust.canonical()["augment"]["stain_jitter"] == 0.2 and robust.canonical()["augment"]["blur"] == 1.0
    for bad in (dict(stain_jitter=0.8), dict(blur=5.0)):
        with pytest.raises(ConfigError, match="augment."):
            AugmentConfig(**bad).validate()

    rng = np.random.default_rng(3)
    image = rng.integers(60, 230, (32, 32, 3), dtype=np.uint8)
    # Stain jitter alone: the factors are the draws after the paper's eight, recomputed here.
    out = augment_image(image, only(stain_jitter=0.3), np.random.default_rng(11))
    factors = 1 + 0.3 * (2 * np.random.default_rng(11).random((1, 11))[0, 8:11] - 1)
    assert np.array_equal(out, scale_stains(image, factors))
    # A stronger haematoxylin is a darker, denser stain; factors of 1 change (almost) nothing.
    assert hematoxylin_density(scale_stains(image, [1.5, 1, 1])).mean() > 1.4 * hematoxylin_density(image).mean()
    assert np.abs(scale_stains(image, [1, 1, 1]).astype(int) - image).max() <= 2
    # Blur alone: sigma uniform in [0, blur].
    blurred = augment_image(image, only(blur=2.0), np.random.default_rng(11))
    sigma = 2.0 * np.random.default_rng(11).random((1, 9))[0, 8]
    assert np.array_equal(blurred, cv2.GaussianBlur(image, (0, 0), float(sigma)))
    # Switched on, they leave the geometry the paper's transforms draw for one image unchanged.
    paper = AugmentConfig(fill_mode="constant")
    with_both = augment_image(image, replace(paper, stain_jitter=0.3, blur=0.2), np.random.default_rng(2))
    without = augment_image(image, paper, np.random.default_rng(2))
    assert (without == 0).all(-1).any() and np.array_equal((with_both == 0).all(-1), (without == 0).all(-1))
    assert not np.array_equal(with_both, without)

    args = build_parser().parse_args(["run", "x", "--stain-jitter", "0.2", "--blur", "1", "--no-augment"])
    config = config_from_args(args)
    assert config.augment.enabled() == ("stain_jitter", "blur")
    # Typed beside --config-file, even at 0 (off), they would be ignored: refused as any other run option.
    from leukdash.errors import LeukdashError

    with pytest.raises(LeukdashError, match="--blur would be ignored"):
        config_from_args(build_parser().parse_args(["run", "--config-file", "meta.json", "--blur", "0"]))


def test_a_blur_too_small_to_blur_anything_is_refused_in_one_line(tmp_path, capsys):
    """A blur up to 0.1 px draws only sigmas that are skipped: it would blur nothing, yet move every
    later image's draws and change the run id. Refused, naming the smallest blur that acts."""
    from leukdash.cli import main
    from leukdash.config import MIN_BLUR_SIGMA

    for blur in (0.05, 1e-320, MIN_BLUR_SIGMA):
        with pytest.raises(ConfigError) as refused:
            AugmentConfig(blur=blur).validate()
        assert str(refused.value) == (f"augment.blur {blur:g} blurs nothing (a sigma below 0.1 px is skipped): give 0 "
                                      "(off) or more than 0.1")
    AugmentConfig(blur=0.11).validate()
    assert main(["run", "synthetic", "--model", "nb", "--blur", "0.05", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == ("error: augment.blur 0.05 blurs nothing (a sigma below 0.1 px is "
                                               "skipped): give 0 (off) or more than 0.1")


def test_turning_a_jitter_on_moves_the_geometric_draws_of_every_image_but_the_first():
    """What the README says: the draw layout (kept for the stored runs) pairs only the first image."""
    images = np.random.default_rng(0).integers(1, 255, (3, 16, 16, 3), dtype=np.uint8)
    geometry = only(rotation=40.0)
    plain = augment_batch(images, geometry, 4)
    jittered = augment_batch(images, replace(geometry, stain_jitter=1e-9), 4)
    assert np.abs(jittered[0].astype(int) - plain[0]).max() <= 2  # the same warp, a stain factor of ~1
    assert all(np.abs(jittered[i].astype(int) - plain[i]).max() > 50 for i in (1, 2))


def test_the_preview_blurs_as_a_run_would_at_its_image_size():
    """A blur's sigma is in pixels of the run's images: a 128 px preview of a 64 px run blurs twice as
    much, so that it looks as a run's copies do; without a run size, as training does."""
    import cv2

    image = textured(1, 128)[0]
    sigma = 2.0 * np.random.default_rng(3).random((1, 9))[0, 8]  # the draw after the paper's eight
    assert sigma >= 0.1
    [scaled] = preview(image, only(blur=2.0), n=1, seed=3, run_size=64)
    assert np.array_equal(scaled, cv2.GaussianBlur(image, (0, 0), float(sigma) * 2))
    [as_trained] = preview(image, only(blur=2.0), n=1, seed=3)
    assert np.array_equal(as_trained, augment_image(image, only(blur=2.0), np.random.default_rng(3)))
    assert np.array_equal(as_trained, cv2.GaussianBlur(image, (0, 0), float(sigma)))
