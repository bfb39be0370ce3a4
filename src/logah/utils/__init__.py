"""Small torch-free helpers shared by every layer (bottom of the import graph)."""

from logah.utils.fs import atomic_path, atomic_write_text

__all__ = ["atomic_path", "atomic_write_text"]
