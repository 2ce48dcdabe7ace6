"""Training: train states (`train_state`), optimizers from config sections (`optim`), per-device step
factories (`steps`), what the loop needs from each family (`tasks`), the one loop (`loop.train`), the loop's
eval hooks, and the one way to open a trained run (`runs.restore_run`)."""
