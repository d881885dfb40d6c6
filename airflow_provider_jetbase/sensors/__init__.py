"""Jetbase sensors (see :mod:`airflow_provider_jetbase.sensors.jetbase`)."""
