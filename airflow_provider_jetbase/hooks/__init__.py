"""Hooks of the Jetbase provider."""
