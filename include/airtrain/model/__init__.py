"""The model stage, pure: no warehouse I/O.

``training`` (a scikit-learn Pipeline per spec, a time-based split, the data hash), ``evaluation``
(metrics overall and per slice), ``gate`` (the promotion gate: thresholds, regressions against the
champion on the same rows, fairness gates), ``explain`` (permutation importance, per-prediction
contributions), ``fairness`` (group metrics and disparities with fairlearn) and ``artifacts`` (skops
bytes with checksums and signatures). Independent of the data stage.
"""
