"""``python -m vaelab`` is the ``vaelab`` command."""

try:  # Ctrl-C while the command's modules load: one line, not a traceback
    from vaelab.cli.main import main
except KeyboardInterrupt:
    import sys

    sys.stderr.write("vaelab: interrupted (SIGINT)\n")
    raise SystemExit(130) from None

raise SystemExit(main())
