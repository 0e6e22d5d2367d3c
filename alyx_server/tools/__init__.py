"""Small domain-free modules, each named for what it does."""
