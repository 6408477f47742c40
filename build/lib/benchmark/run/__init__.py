"""One run, end to end in one process: teachers, training (`train`, `harness`), evaluation
(`evaluation`, `evaluate`, `robustness`), checkpoints from elsewhere (`external`), the fast
path, trackers and the `xdkd bench` jobs of a single process."""
