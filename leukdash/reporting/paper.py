"""The figures Ahmed et al. (Diagnostics, 2019) report, as PAPER.md gives them: one source for
the dashboard's charts and the reproduction report, which show them beside leukdash's own."""

from leukdash.evaluation.labels import FIVE_CLASS_TASK

BINARY_TASK = "ALL vs HEALTHY"

# 5-fold mean validation accuracy of each model, per task ("Classic classifiers").
PAPER_VAL_ACC = {
    BINARY_TASK: {"cnn": 0.8825, "nb": 0.6969, "dt": 0.6294, "knn": 0.5857, "svm": 0.5009},
    FIVE_CLASS_TASK: {"cnn": 0.8174, "nb": 0.5268, "dt": 0.4592, "knn": 0.4351, "svm": 0.2084},
}
# The CNN's per-fold validation accuracy (experiments 2 and 3a).
PAPER_CNN_FOLDS = {
    BINARY_TASK: (0.6516, 0.9632, 0.9066, 0.9847, 0.9066),
    FIVE_CLASS_TASK: (0.7617, 0.9474, 0.9930, 0.7137, 0.6709),
}
# Table 2: the CNN's training and validation accuracy and loss per experiment.
PAPER_TABLE2 = {  # experiment: (train_acc, val_acc, train_loss, val_loss)
    "1": (0.9955, 0.8116, 0.0149, 1.3093),
    "2": (0.9990, 0.8825, 0.0033, 0.5653),
    "3a": (0.9934, 0.8174, 0.0207, 1.1419),
    "3b": (0.9977, 0.6641, 0.0077, 2.3665),
    "3c": (0.9936, 0.6340, 0.0203, 2.6636),
}
# The CNN experiments of Table 2 measured by 5-fold cross-validation, by task and the training settings
# that tell them apart (optimizer, epochs); every one trained with batches of 32, on x8 augmented raw images
# (the report's matrix holds these settings). Exp 2's optimizer is not named: the paper's default, SGD, as for
# Exp 3a. No learning rate is given (Keras' defaults).
PAPER_CNN_EXPERIMENTS = {(BINARY_TASK, "sgd", 25): "2", (FIVE_CLASS_TASK, "sgd", 25): "3a",
                         (FIVE_CLASS_TASK, "sgd", 100): "3b", (FIVE_CLASS_TASK, "adam", 25): "3c"}
PAPER_MODEL_NAMES = {"cnn": "CNN", "nb": "Naive Bayes", "dt": "Decision tree", "knn": "3-NN", "svm": "SVM"}
