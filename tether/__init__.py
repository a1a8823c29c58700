"""tether: attribute, broker, enforce and record AI agents' API calls."""

__version__ = "0.1.0"
