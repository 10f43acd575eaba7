"""Custom operators: thin ``execute()`` methods over the pure core (:mod:`airtrain`)."""

from airtrain_airflow.operators.predictions import BatchPredictionOperator, PublishPredictionsOperator

__all__ = ["BatchPredictionOperator", "PublishPredictionsOperator"]
