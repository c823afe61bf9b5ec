"""The benchmarks (``make bench``): the runner against plain pg_dump, a naive pipeline, OpenSSH.

    run.py        the command: knobs, servers, rows, results
    context.py    what each row gets: servers, databases on demand, fresh targets
    data.py       generated databases (pgbench, random bytea, text), kept in a cache
    measure.py    alternating rounds, medians and spreads, ratios, goals
    commands.py   timing commands and pipelines, and the runner
    rows/         one module per row of results
"""
