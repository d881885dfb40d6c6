"""Jetbase provider."""
