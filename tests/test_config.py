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
