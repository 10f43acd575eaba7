"""Custom operators: thin ``execute()`` methods over the pure core (:mod:`airtrain`)."""

from airtrain_airflow.operators.drift import DriftCheckOperator, DriftReportLink
from airtrain_airflow.operators.landing import LandingFileSensor
from airtrain_airflow.operators.predictions import BatchPredictionOperator, PublishPredictionsOperator
from airtrain_airflow.operators.validation import ValidateOperator, ValidationReportLink

__all__ = ["BatchPredictionOperator", "DriftCheckOperator", "DriftReportLink", "LandingFileSensor",
           "PublishPredictionsOperator", "ValidateOperator", "ValidationReportLink"]
