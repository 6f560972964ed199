"""The ablation code, by layer; `repro ablate` (repro.ablate) sits on top of it.

    request.py   AblationRequest: what one `repro ablate` call asks for; renders itself as CLI
                 arguments and parses back (what --plan prints, what a scheduler runs)
    plan.py      pure planning: the runs of an ablation (arms x seeds, selection grids), their
                 identity and state, lr selection (`choose`), the manifest, --only and --plan rows
    execute.py   training them: the serial runner, the selection -> choose -> main-seeds
                 staging (written once, for both runners), the progress view
    pool.py      the --jobs worker pool, a runner with the same `execute` as the serial one

Imports go one way: request <- plan <- execute <- pool <- repro.ablate. Run directories are
read and written through repro.rundir only.
"""
