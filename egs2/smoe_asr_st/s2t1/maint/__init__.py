"""Maintainer tools of the recipe (see README.md here); run from the recipe dir as ``python -m maint.<module>``."""
