"""Reports on finished runs, with no Lightning: TensorBoard curves read back, speed-up, tables, plots.

:mod:`logah.report.compare` (event reading, final/best values, speed-up, markdown) and
:mod:`logah.report.plot` (matplotlib figure). ``logah compare`` and ``experiments/`` use them; so
can a notebook. Imports only ``logah.config`` and ``logah.utils``.
"""
