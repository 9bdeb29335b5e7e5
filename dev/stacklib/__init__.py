"""The code behind `dev/stack` (the executable is a thin launcher; its docstring is the usage).

One module per concern, read top-down:

    config.py       paths, pinned versions (dev/stack.d/versions.env), fixed development
                    credentials, StackError and log(): what every other module imports
    state.py        STACK_DIR/state.json (ports, pids, versions) and the file lock
    processes.py    loopback ports, /proc inspection, running helper commands, kill_group
    tools.py        Debian packages (apt-get), Java discovery, the dedicated service user
    fetching.py     cached, checksummed downloads from Maven Central and unpacking
    webclient.py    small JSON/HTTP helpers used by the readiness checks
    component.py    Component: the supervisor every server shares (start in its own
                    session with our mark, wait until ready, stop by recorded pid only)
    components/     one module per server: postgres, kafka, schema_registry,
                    elasticsearch, keycloak, redis, prometheus (fetch/prepare/command/
                    ready/check/env), and the registry COMPONENTS in `dev/stack` order
    cli.py          the commands up/check/env/status/down/logs and main()

Only the Python 3 standard library is used, so this runs on a fresh machine.
"""
