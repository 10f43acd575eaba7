"""The data stage: a day's batch from its source into the warehouse, validated.

``ingest`` (landing files or a source table into ``raw.<name>_batches``, as received), ``validation``
(typed, checked per row and per batch; the Great Expectations adapter is ``gx``), ``quarantine`` (a
validated partition into the features table, the quarantine and ``monitoring.validation_runs`` in
one transaction), ``labels`` (delayed labels, known by ``available_on``), ``features`` (reading the
validated rows point in time) and ``tables`` (this stage's DDL). Independent of the model stage.
"""
