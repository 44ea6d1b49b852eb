"""Command-line interface: ``vaelab train | sample | plot``."""
