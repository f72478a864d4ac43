"""The application layer: what the API and the worker do with tasks, on top of the ports."""
