"""Write a starting spec for a new pipeline from a sample of its data (`make new-pipeline`).

    python -m airtrain.scaffold sample.csv --name telco --target Churn [--key customerID]
    make new-pipeline SAMPLE=sample.csv NAME=telco TARGET=Churn [KEY=customerID]

The sample is read exactly as the ingest task reads a landing file (every value as text; blank and
whitespace-only values are null). For every column it infers:

* the warehouse name: the header in snake_case (``MonthlyCharges`` → ``monthly_charges``, with
  ``source: MonthlyCharges`` so the file needs no rewriting);
* the type: ``bool`` when every value is a bool spelling (yes/no, true/false, 1/0, ...), ``int`` or
  ``float`` when every value is a number, else ``category`` with the values seen as ``allowed``
  (columns with more distinct values than ``--max-categories`` are left out, with a comment);
* ``nullable: true`` when the sample has blanks (they are then imputed by the model's pipeline);
* ``min``/``max`` from the values seen, widened by half their span (``min: 0`` for non-negative data);
* the target: ``binary_classification`` with ``positive:`` (the yes/true/1-like value, else the rarer
  one) when it has two values, else ``regression``; labels come from the file itself
  (``label_delay_days: 0``, no ``labels`` section);
* the date column: a column whose every value is a date (``2011-01-31``, ``31-01-2011``,
  ``01/31/2011``, ``2011-01-31 13:00:00``, ...); a form other than ``YYYY-MM-DD`` is written as
  ``date_format``;
* batch size bounds, the training and monitoring windows and minimum row counts from the rows per
  day: counted per date of the date column (the sample's rows count as one day only when it has
  no date column, which the header comment then says);
* **leaks**: a column that gives the target away - parts that add up to it (``casual + registered
  = cnt``), a near-perfect correlation with it, or one column that alone predicts it almost
  perfectly - is kept (validated, stored) but marked ``model_input: false`` with a comment saying
  why, and reported; set it back to ``true`` only if it is really known when predictions are made.

**The sample** should look like the data the pipeline will get: the columns of a landing file, with
its date column, over **several days** (a week or more, so that rows per day and their spread can
be counted), a few hundred rows at least; for a file per day, concatenate a few days' files.

The spec is validated before it is written and never overwrites a file unless ``--force``. It is a
starting point: read it, tighten the ranges and categories, choose the estimator and the gates.
"""

from airtrain.scaffold.build import build_spec, main
from airtrain.scaffold.sample import Column, find_leaks, infer_kind, read_sample, snake_case

__all__ = ["Column", "build_spec", "find_leaks", "infer_kind", "main", "read_sample", "snake_case"]
