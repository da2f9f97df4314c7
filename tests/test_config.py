"""Run and augmentation settings: validation names the field, the canonical form drops noise."""

import pytest

from leukdash.config import AugmentConfig, RunConfig, stable_hash
from leukdash.errors import ConfigError


@pytest.mark.parametrize("changes, field", [
    ({"model": "rnn"}, "model"), ({"epochs": 0}, "epochs"), ({"folds": 1}, "folds"),
    ({"image_size": 4}, "image_size"), ({"learning_rate": -1.0}, "learning_rate"),
    ({"classes": ("ALL",)}, "classes"), ({"test_fraction": 0.9}, "test_fraction"),
    ({"augment": AugmentConfig(rotation=400)}, "augment.rotation"),
    ({"augment": AugmentConfig(fill_mode="wrap")}, "augment.fill_mode"),
])
def test_invalid_settings_name_their_field(changes, field):
    with pytest.raises(ConfigError, match=rf"^{field} "):
        RunConfig(**changes).validate()


def test_canonical_form_keeps_only_what_changes_a_result():
    cnn = RunConfig(model="cnn")
    assert "k" not in cnn.canonical() and "feature_set" not in cnn.canonical()
    assert RunConfig(model="nb", k=9).canonical() == RunConfig(model="nb", epochs=3).canonical()
    assert RunConfig(model="knn", k=9).canonical() != RunConfig(model="knn").canonical()
    unaugmented = RunConfig(augment_factor=1, protocol="paper").canonical()
    assert unaugmented["augment"] is None and unaugmented["protocol"] == "strict"
    assert RunConfig(dataset="a").canonical() == RunConfig(dataset="b").canonical()  # the fingerprint decides


def test_round_trip_through_plain_dicts():
    config = RunConfig(classes=["ALL", "HEALTHY"], augment=AugmentConfig(zoom=0.1).to_dict())
    assert config.classes == ("ALL", "HEALTHY") and config.augment.zoom == 0.1
    assert RunConfig.from_dict(config.to_dict()) == config
    assert stable_hash(config.canonical()) == stable_hash(RunConfig.from_dict(config.to_dict()).canonical())
    with pytest.raises(ConfigError, match="unknown run setting"):
        RunConfig.from_dict({"epochz": 3})
    assert AugmentConfig.off().enabled() == ()


def test_integers_from_json_and_the_floats_of_the_command_line_are_one_run():
    from_json = RunConfig.from_dict({"model": "nb", "augment_factor": 2, "augment": {"rotation": 40, "shear": 20}})
    typed = RunConfig(model="nb", augment_factor=2)  # what the command line and the dashboard give (40.0)
    assert from_json.canonical() == typed.canonical()
    assert stable_hash(from_json.canonical()) == stable_hash(typed.canonical())
    assert RunConfig.from_dict({"learning_rate": 1}).canonical() == RunConfig(learning_rate=1.0).canonical()
    assert stable_hash(RunConfig(model="nb", augment_factor=2, augment=AugmentConfig(rotation=30)).canonical()) != \
        stable_hash(typed.canonical())  # another value is still another run
    for wrong in (True, "0.1", [0.1]):
        with pytest.raises(ConfigError, match="^learning_rate "):
            RunConfig.from_dict({"learning_rate": wrong}).validate()
    with pytest.raises(ConfigError, match="^learning_rate "):
        RunConfig(learning_rate=10 ** 400).validate()  # too large for a float: refused, not an OverflowError


def test_a_learning_rate_that_is_zero_in_float32_is_refused():
    """Keras holds the learning rate as float32: 1e-46 is 0.0 there and the CNN would never train."""
    import numpy as np

    assert np.float32(1e-46) == 0
    for tiny in (1e-46, 1e-40):
        with pytest.raises(ConfigError, match=r"^learning_rate .* smallest normal float32 .*: give a larger one$"):
            RunConfig(learning_rate=tiny).validate()
    RunConfig(learning_rate=1e-30).validate()  # small, but a float32 of full precision


def test_a_computed_setting_is_the_typed_one_and_the_same_run():
    """7 * 0.1 is 0.7000000000000001 and 35 * 0.01 is 0.35000000000000003: a page or a notebook computing
    a setting gets the value, the transform and the run id of the one typed on the command line."""
    typed = RunConfig(model="nb", augment_factor=2, augment=AugmentConfig(stain_jitter=0.35, blur=0.7))
    computed = RunConfig(model="nb", augment_factor=2, augment={"stain_jitter": 35 * 0.01, "blur": 7 * 0.1})
    assert computed.augment.stain_jitter == 0.35 and computed.augment.blur == 0.7
    assert stable_hash(computed.canonical()) == stable_hash(typed.canonical())
    for tenths in range(2, 31):  # every blur the page offers
        assert AugmentConfig(blur=tenths * 0.1).blur == tenths / 10
    for percent in range(0, 101, 5):  # every share it offers
        assert AugmentConfig(width_shift=percent * 0.01).width_shift == percent / 100
    assert RunConfig(learning_rate=3 * 0.1, test_fraction=0.7 - 0.5).canonical() == \
        RunConfig(learning_rate=0.3, test_fraction=0.2).canonical()
    # Clean values are kept exactly, so the runs stored with them keep their ids.
    for value in (0.35, 1e-3, 0.3, 0.2, 0.4, 40.0, 0.123456789012):
        assert RunConfig(learning_rate=value).learning_rate == value
        assert AugmentConfig(rotation=value).rotation == value


def test_a_float32_cell_and_a_negative_zero_are_the_settings_they_mean():
    """A DataFrame's float32 column holds 0.1 as 0.10000000149..., which kept to 12 digits was another
    run than 0.1; -0.0 (off) was another run than 0."""
    import numpy as np

    assert RunConfig(learning_rate=np.float32(0.1)).learning_rate == 0.1
    assert stable_hash(RunConfig(model="cnn", learning_rate=np.float32(0.01)).canonical()) == \
        stable_hash(RunConfig(model="cnn", learning_rate=0.01).canonical())
    off = AugmentConfig(rotation=-0.0)
    assert str(off.rotation) == "0.0" and off.enabled() == AugmentConfig(rotation=0).enabled()
    assert stable_hash(RunConfig(model="cnn", augment=off).canonical()) == \
        stable_hash(RunConfig(model="cnn", augment=AugmentConfig(rotation=0)).canonical())


def test_the_paper_cnn_needs_images_its_layers_leave_a_pixel_of():
    with pytest.raises(ConfigError, match="^image_size must be at least 10 for the paper CNN"):
        RunConfig(model="cnn", image_size=9).validate()
    RunConfig(model="cnn", image_size=10).validate()
    RunConfig(model="cnn", architecture="leukdash", image_size=8).validate()
    RunConfig(model="nb", image_size=8).validate()


@pytest.mark.parametrize("fraction, nearest", [(0.4, "0.333 and 0.5"), (0.15, "0.143 and 0.167")])
def test_a_holdout_fraction_is_one_of_k_grouped_folds_or_refused(fraction, nearest):
    import numpy as np

    from leukdash.data.folds import holdout_split

    with pytest.raises(ConfigError, match=rf"^test_fraction must be 1/k, .* got {fraction}: the nearest are {nearest}$"):
        RunConfig(model="nb", test_fraction=fraction).validate()
    for accepted, share in ((0.25, 0.25), (0.333, 1 / 3), (0.5, 0.5)):
        RunConfig(model="nb", test_fraction=accepted).validate()
        labels = np.repeat([0, 1], 60)
        split = holdout_split(labels, np.arange(120), accepted, seed=0)
        assert np.mean(split == 0) == pytest.approx(share, abs=0.01)  # the fraction asked is the fraction drawn


@pytest.mark.parametrize("classes", [("ALL", ""), ("", "ALL", "HEALTHY"), ("ALL", " ")])
def test_an_empty_class_name_is_named_as_such(classes):
    with pytest.raises(ConfigError, match=r"^classes holds an empty name \(a comma too many\?\)"):
        RunConfig(classes=classes).validate()


def test_a_dataset_folder_given_as_a_path_is_the_run_of_its_string(tmp_path):
    # From Python (a notebook), a folder is naturally a pathlib.Path: the same run as its string.
    config = RunConfig(dataset=tmp_path, model="nb")
    config.validate()
    assert config == RunConfig(dataset=str(tmp_path), model="nb") and config.to_dict()["dataset"] == str(tmp_path)
    with pytest.raises(ConfigError, match="^dataset "):
        RunConfig(dataset=42).validate()
