"""The models a fold trains: the CNNs (Keras), the classic classifiers (scikit-learn) and the
engineered cell features. Imports only the package's foundation."""
