"""Training, one concern per module: `steps` (state, optimizer, the step factory), `objectives`
(the loss chosen by config), `loop` (train_and_evaluate) and `runlog` (metrics, progress, guards)."""
