"""What a suite says and what it means, torch-free: the schema (`config`, `specs`), loading
with line-numbered errors (`loader`, `yaml_text`), expansion into runs (`expansion`), the
protocols, the dataset families' declarations, the metric and model-selection vocabulary, and
the catalogue of registered names read as data."""
