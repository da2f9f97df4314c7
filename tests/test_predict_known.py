"""Predicting a folder that mixes images the run trained on (known, answered out of fold) with new ones."""

import shutil

import cv2
import numpy as np

from leukdash.config import AugmentConfig, RunConfig
from leukdash.engine.runner import run
from leukdash.evaluation.answer_table import answers_csv
from leukdash.evaluation.predict import FoldEnsemble, predict_files


def test_a_folder_of_known_and_new_images_gives_the_rows_of_each_image_alone_batching_the_known(
        tiny_dataset, tmp_path, monkeypatch):
    config = RunConfig(dataset=str(tiny_dataset), model="knn", feature_set="pixels", image_size=16, augment_factor=1,
                       augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    folder = tmp_path / "mixed"
    folder.mkdir()
    own = [sorted(tiny_dataset.glob(f"{name}/*.png"))[i] for i, name in enumerate(["ALL", "AML", "CLL", "CML"])]
    for i, path in enumerate(own):  # known and new images alternate in the folder's order
        shutil.copy(path, folder / f"{i}a_{path.parent.name}.png")
        cv2.imwrite(str(folder / f"{i}b_new.png"), 255 - cv2.imread(str(path)))  # another picture: not known
    paths = sorted(folder.glob("*.png"))
    alone = [predict_files(run_id, [path])[0] for path in paths]

    batches = []
    answer = FoldEnsemble.fold_probabilities
    monkeypatch.setattr(FoldEnsemble, "fold_probabilities",
                        lambda self, images: batches.append(len(images)) or answer(self, images))
    together = predict_files(run_id, paths)
    assert [entry["known"] is not None for entry in together] == [True, False] * len(own)
    assert answers_csv(together) == answers_csv(alone)
    # The folder's answers and the known images' out-of-fold answers: one batch each, not one query per known image.
    assert batches == [len(paths), len(own)]
