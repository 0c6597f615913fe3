"""vggbook: the VGG paper (Simonyan & Zisserman, ICLR 2015) as a reproducible book."""

__version__ = "0.1.0"
