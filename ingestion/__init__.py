"""FitLake ingestion: land Azure SQL extracts and Kafka micro-batches as Parquet.

The package works without Airflow: every job is a plain function that takes a
:class:`~ingestion.config.Settings` and returns a summary object, and
``python -m ingestion`` exposes the same functions on the command line.
"""

__version__ = "0.1.0"
