"""`python -m benchmark.methods`: the registries' catalogue of names as JSON on stdout, read
by torch-free processes that find no cached copy for this code (`benchmark.suite.catalogue`)."""

import json

import benchmark.methods  # noqa: F401  (every method registers itself, then the plug-ins)
from benchmark.methods.catalogue import live_catalogue

print(json.dumps(live_catalogue().to_json()))
