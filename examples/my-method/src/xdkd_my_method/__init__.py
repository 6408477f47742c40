"""An example XDKD-Bench plug-in: `my_kd` (method.py) and the `my_cnn` backbone (backbone.py),
registered through the entry points in pyproject.toml."""
