"""Training, one concern per module: `steps` (state, optimizer, the step factory, restore-or-init),
`objectives` (the loss chosen by config, a package with its registry), `loop` (train_and_evaluate),
`runlog` (what a run shows), `metric_writer` (JSONL / TensorBoard), `guards` (non-finite checks),
`stop_flag` (SIGTERM / SIGINT) and `workdir_lock` (one run per workdir)."""
