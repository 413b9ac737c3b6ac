"""Monitor, alerts, dashboard and API through a real Airflow: one installation of their own for this
package (conftest.py), started before and stopped after these tests, so it never runs beside the
shared `installation` of tests/dags."""
