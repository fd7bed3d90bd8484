"""Benchmarks of tritonopt's steps against every torch path and the memory-bandwidth floor.

``python -m tritonopt.bench --help`` runs them; ``bench/`` at the repository root
holds the pytest-benchmark suite and the committed results. One module per job:
``optimizers`` (what is compared and how many bytes a step must move), ``cases``
(parameter shapes and groups), ``implementations`` (the paths side by side),
``timing``, ``counters`` (launches and memory), ``run``, ``report``, ``plot`` and
``profile``.
"""
