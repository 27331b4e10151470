"""The one place swa_ops' version and the TensorFlow versions its C++ code builds against are
written: setup.py reads them (the wheel's metadata, the source build's check), the package
exports the version as swa_ops.__version__, and tests/test_packaging.py checks the README."""
__version__ = "0.2.0"
SUPPORTED_TENSORFLOW = ("2.16", "2.17", "2.18", "2.19", "2.20", "2.21")
