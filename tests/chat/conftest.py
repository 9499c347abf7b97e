"""Qt tests in tests/chat run without a screen: the offscreen platform, set before any QApplication exists."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
