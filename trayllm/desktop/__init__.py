"""Desktop integration on Linux: systemd user units, XDG autostart and launcher entries, and the icon.

This package is the one source of every such file. ``trayllm desktop install`` renders them for the running
interpreter into the user's XDG dirs; ``scripts/build_packaging.py`` renders the same files for a distro
install (``/usr/bin/trayllm``) into ``packaging/``, where a test keeps the committed copies in step. The PNG
icons take one step more: Pillow draws them, which install must not need, so the script draws them into
``icons/`` here (package data), and both install and ``packaging/`` copy those files.

- ``target``: what the files run (the command prefix) and where the documentation lies;
- ``quoting``: command lines quoted for systemd and for the desktop-entry spec;
- ``keyfile``: the INI-style text both formats share;
- ``units``: the daemon and tray units;
- ``entries``: the launcher and autostart entries;
- ``icon``: the launcher icon as SVG and PNGs, from one geometry (the PNGs drawn ahead into ``icons/``);
- ``layout``: which files exist and where each one goes;
- ``writing``: atomic, idempotent writes and removals;
- ``tools``: running an external tool quietly, a failure as one line;
- ``systemd`` and ``caches``: the user manager and the desktop's caches, through those tools;
- ``changes``: what one install wrote, so that a failure can undo it;
- ``install``: install and uninstall for the current user.
"""
