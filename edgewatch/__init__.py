"""edgewatch: anomaly detection next to the equipment.

Importing the package is cheap and side-effect free; torch is imported only
by the training and export subpackages, and only when they are used.
"""

__version__ = "0.1.0"
