"""Experiments: measurements on real models and data, tables and plots."""
