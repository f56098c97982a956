"""A synthetic long-tail classification task: trains in seconds, exercises the whole run layer."""
