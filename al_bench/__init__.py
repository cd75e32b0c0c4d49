"""al-bench: reproduce deep active-learning benchmarks from papers."""

__version__ = "0.1.0"


class ConfigError(ValueError):
    """Bad user input (config, paths, data). The CLI prints it as one line and exits with code 2."""
