"""One module per `alyx` command (or command group).

Each module defines a Click command or group named `command` and keeps imports of heavy
libraries (aiohttp, the server stack) inside the callback, so that `alyx --help` and
light commands start fast. `alyx_cli.main` registers every module's `command`.
"""
