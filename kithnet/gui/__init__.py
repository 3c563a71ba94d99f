"""The PySide6 desktop app (issue 6); reaches the node only through one bridge."""
