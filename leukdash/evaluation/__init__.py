"""What a finished run is worth: comparisons and McNemar, external tests on another dataset,
the out-of-distribution check and prediction. Imports the engine and everything beneath it."""
