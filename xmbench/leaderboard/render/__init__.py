"""Rendering of what the aggregate computed: Markdown, LaTeX and HTML tables, report.md, README.md.

Everything here formats numbers it is handed (xmbench/leaderboard/aggregate.py computed them); it
recomputes nothing and reads no file: the build passes the published numbers, the plots' files
and the label protocol in.
"""
