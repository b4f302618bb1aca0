"""How the runs of `kvt compare` and `kvt tune` are trained: the executors.

The contract every executor keeps: `executor(todo, jobs, started, finished, tick)` trains
each `Job` of `todo` (`kvt <job.argv>`, its output appended to the run's train.log), at
most `jobs` at a time; it calls `started(job)` once a job is under way, `finished(job,
exit code, seconds)` once it has ended, and `tick()` every second or so while it waits
(what `Progress` prints from). A failed run is recorded by its own status.json and does
not stop the others. On KeyboardInterrupt an executor stops what it started (each run
checkpoints and marks itself interrupted), then lets the interrupt go on.

- `local_pool`: child processes of this one, each with its share of the cores
  (`child_env`).
- `kvt.executors.ray_executor.RayExecutor`: Ray tasks on the nodes of a cluster (the
  node's side in `ray_task`); imported only where it is used, so that Ray stays optional.

Executors know nothing of sweeps or studies: a `Job` carries what they need.
"""

from kvt.executors.job import Executor, Job, Remote, next_action
from kvt.executors.local import child_env, local_pool
from kvt.executors.progress import Progress

__all__ = ["Executor", "Job", "Progress", "Remote", "child_env", "local_pool", "next_action"]
