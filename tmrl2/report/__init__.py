"""Reports on a run folder: ``tmrl2 report RUN`` and ``tmrl2 watch RUN``.

- :mod:`~tmrl2.report.run` reads a run folder (``metrics.jsonl``, ``summary.json``,
  ``evals.jsonl``, ``config.yaml``) into series;
- :mod:`~tmrl2.report.lap` drives one deterministic lap of the run's policy on the simulator
  and records its trajectory (positions, speeds, headings);
- :mod:`~tmrl2.report.figures` and :mod:`~tmrl2.report.line` draw the figures with matplotlib
  (Agg canvas, no display, nothing set at import);
- :mod:`~tmrl2.report.page` writes the HTML page (PNGs beside it, or embedded);
- :mod:`~tmrl2.report.video` writes the lap as a GIF or MP4 (camera view and map inset);
- :mod:`~tmrl2.report.commands` adds both sub-commands to ``tmrl2``.

Nothing here is imported by training: matplotlib and imageio load only when a command runs.
"""
