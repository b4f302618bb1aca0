"""`kvt compare`: a grid of configurations times seeds, each an ordinary kvt run in its
own subprocess, then a statistical comparison against a baseline.

The sweep directory:

    sweep.json          the plan: base config, configurations (label, overrides), seeds,
                        with --arm each arm's config, file and SHA-256,
                        runs at a time (-j), the executor (local or ray) and its settings
    status.json         running | complete | interrupted (of the sweep as a whole)
    configs/<slug>.json each configuration's TrainConfig, as `kvt train --config` reads it
    runs/<slug>/seed-<n>/   one kvt run directory per (configuration, seed), plus train.log
    compare.md          the result table, in words and numbers
    compare.json        the same data: every run, every summary, every comparison
    compare.png         accuracy per configuration, every seed shown
    curves.png          mean learning curves with a ±1 std band per configuration

The last four are written when the sweep ends, and by `--report` at any time (marked
interim before the end).

A sweep that stops (Ctrl-C, a crash, a reboot) resumes with `--resume`: finished runs
are kept, interrupted ones continue from their last finished epoch, failed ones start
over. One process at a time runs a sweep (it holds the sweep directory's lock, as each
child holds its run's). The sweep imports no framework itself; only its children do.

The modules, each importing only those before it: `plan` (the grid x seeds), `stats`
(two samples compared, scipy), `design` (configurations whose runs were identical at
every seed, counted once; runs that pair up by seed), `factorial` (the 2x2 effects),
`results` (what the runs came to, analysed), `arms` (configurations that start from
their own tuned config file, `--arm`), `render` (tables, compare.md, plots),
`sweep` (the sweep directory, the training of its runs by an executor of
`kvt.executors`, and the report of what a sweep has finished so far).
"""

from kvt.compare.plan import build_plan, parse_seeds, parse_vary
from kvt.compare.render import write_results
from kvt.compare.results import analyse, collect, unfinished
from kvt.compare.sweep import RESULTS, Sweep, execute, report

__all__ = ["RESULTS", "Sweep", "analyse", "build_plan", "collect", "execute",
           "parse_seeds", "parse_vary", "report", "unfinished", "write_results"]
