"""The `lumyn` command-line tool (entry point: `lumyn.cli.main:main`)."""
