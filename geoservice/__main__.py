"""``python -m geoservice`` is the ``geoservice`` command."""

from geoservice.cli import main

main()
