"""geoservice: a city map service for urban-management convenience points, streets and unit grids."""

__version__ = "0.1.0"
