"""Jetbase operators (see :mod:`airflow_provider_jetbase.operators.jetbase`)."""
