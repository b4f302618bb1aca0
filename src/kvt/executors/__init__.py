"""How the runs of kvt compare are trained: the executors."""
