"""The client side of `alyx deploy`: where to ship (targets), the HTTP calls (client) and how
a plan is shown (plan_view). The command itself is alyx_cli/commands/deploy.py."""
