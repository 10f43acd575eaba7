"""The monitoring stage: is the live model still right?

``windows`` (which windows a run checks, the trigger rule, the decisions and the retrain trigger
records), ``reference`` (the window's rows and the champion's reference sample), ``drift`` (the
Evidently adapter), ``performance`` (realized performance and fairness on labels known since),
``check`` (one window: measure, store, decide), ``canary`` (the daily canary decision) and
``tables`` (this stage's DDL).
"""
