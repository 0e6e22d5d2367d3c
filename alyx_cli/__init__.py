"""The `alyx` command line: init, dev, serve, migrate, db, generate, deploy, admin, tui."""
