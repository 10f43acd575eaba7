"""The model registry in PostgreSQL: what exists, what is live, and why.

``versions`` (model versions with their artifacts, verified before every load), ``status``
(rejections, promotion holds, every run's gate decision), ``rollouts`` (canary rollout records),
``champions`` (one champion per pipeline, changed only by a locked, logged compare-and-swap that also
closes a running canary), ``release`` (at once or as a canary; graduation and abort), ``evaluations``
(metrics, importance and fairness of each evaluation), ``approvals`` (human approval of promotions),
``cards`` (a model card per version) and ``tables`` (this stage's DDL).

Invariants (docs/RELIABILITY.md): exactly one champion per pipeline once a model was promoted; every
champion change writes exactly one ``registry.promotion_log`` row in the same transaction; a model is
only loaded after its signature and checksum match.
"""
