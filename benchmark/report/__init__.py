"""Reporting reads records only (never a model, never torch): tidy frames, statistics and the
claim rule, leaderboards and their renderings, plots, the regression check, the site."""
