"""Developer tooling that is never deployed: the embedded PostgreSQL (`localpg`) behind `make run`
and the tests, and the simulated-month driver (`demo`) behind `make demo` and the e2e tests.

Nothing in ``include/`` or ``plugins/`` imports this package; the Docker image does not contain
it (see .dockerignore) and the installed ``airtrain`` distribution does not ship it.
"""
