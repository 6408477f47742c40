"""Where runs execute: `local` (a pool of worker processes, or the driver itself) and
`slurm` (submitit job arrays). Both share the plan, the scheduler's order (teachers first)
and the store's claims, so any mix of them, killed and restarted at any moment, ends with
exactly one record per spec."""
