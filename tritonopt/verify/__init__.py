"""Parity report of an optimizer against torch and a float64 oracle (``python -m tritonopt.verify``)."""
