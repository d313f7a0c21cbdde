"""Development tools run by ``make`` (not part of the installed distribution)."""
