"""The one place swa_ops' version is written: setup.py reads it for the wheel's metadata, the
package exports it as swa_ops.__version__, and tests/test_packaging.py checks the README."""
__version__ = "0.2.0"
