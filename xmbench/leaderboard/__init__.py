"""The leaderboard: from metrics.json files to tables, statistics, plots, report.md and README.md.

One module per stage, each importing only the stages before it, so a change to how a number is
shown never reaches how it is computed:

- ``schema``: the frame's identity columns and the baseline's name (constants only).
- ``read``: metrics.json files to flat columns, fast at 10,000 files.
- ``load``: the run-level frame (ok, failed, missing rows; costs from the benchmark TSVs and
  pretrain.json kept as columns).
- ``published``: the published numbers (config/published_results.csv).
- ``aggregate``: method order, cells, summaries, gains and draws of one table (a leaf: pure frames).
- ``csv_writer``: the fast CSV writer.
- ``plots``: one function per plot kind, all in ``PLOTS``: a new plot is one entry there.
- ``render``: Markdown, LaTeX, HTML, report.md and README.md from what it is given; it reads nothing.
- ``build``: ``build_results`` and the ``xmbench.cli leaderboard`` command behind it.

Nothing is imported here, so that ``xmbench.leaderboard.plots.PLOTS`` (read by the Snakefile) stays cheap.
"""
