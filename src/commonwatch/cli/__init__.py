"""The ``commonwatch`` command line: thin wrappers over the services."""
