"""The package version, in a module of its own: the engine stamps it into every record, and
importing it must not import the package's face (which imports the SDK, which imports the engine)."""

__version__ = "0.1.0"
