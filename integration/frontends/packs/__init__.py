"""Packs for SOAR platforms, generated from commands.yml: what a platform installs so that its
playbooks call our commands through `msteams serve`: ``xsoar.py`` (the Cortex XSOAR content pack
with an integration forwarding every command and the MicrosoftTeamsAsk script), ``stackstorm.py``
(a pack of python-script actions and a webhook sensor), ``splunk_soar.py`` (an app with a
connector). A command added to
the registry appears in every pack without an edit here.

``files.py`` holds what the generators share (writing the files, the command around them).

Door: ``PLATFORMS`` (``msteams pack PLATFORM`` -> the module here whose ``main(argv, out)`` writes
that platform's pack)."""

PLATFORMS = {"xsoar": "xsoar", "stackstorm": "stackstorm", "splunk-soar": "splunk_soar"}
