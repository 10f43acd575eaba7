"""The serving stage: batch predictions written back to the warehouse.

``target`` (where a date's predictions of a version go), ``scoring`` (stream features out by Arrow
batches, score, stream predictions into a stage table), ``publish`` (swap the stage in as the date's
partition, atomically), ``arms`` and ``canary`` (a running canary's two arms, scored and published
together), ``can_score`` (can a version score under the current spec?) and ``tables`` (the
prediction tables and the ``_latest`` view).
"""
