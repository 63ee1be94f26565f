"""One module per clinical domain, each exporting ``SERVICES``."""
