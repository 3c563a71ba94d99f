"""Light and dark: the app draws with the palette's roles only, so it follows the
system's colour scheme. Where the platform has no scheme to follow (Xvfb, offscreen, a
bare window manager), `use_scheme` sets a palette of the asked scheme itself; the
screenshots and the palette test use it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

Role = QPalette.ColorRole
Group = QPalette.ColorGroup

# Fusion's own dark colours (Qt 6.8), so a dark window looks as it would on a desktop.
_DARK = {
    Role.Window: "#323232",
    Role.WindowText: "#f0f0f0",
    Role.Base: "#262626",
    Role.AlternateBase: "#2d2d2d",
    Role.ToolTipBase: "#3c3c3c",
    Role.ToolTipText: "#f0f0f0",
    Role.PlaceholderText: "#9a9a9a",
    Role.Text: "#f0f0f0",
    Role.Button: "#3c3c3c",
    Role.ButtonText: "#f0f0f0",
    Role.BrightText: "#ff6b6b",
    Role.Light: "#505050",
    Role.Midlight: "#464646",
    Role.Mid: "#2a2a2a",
    Role.Dark: "#1e1e1e",
    Role.Shadow: "#0a0a0a",
    Role.Highlight: "#2f65ca",
    Role.HighlightedText: "#ffffff",
    Role.Link: "#7fb0ff",
    Role.LinkVisited: "#c69cff",
}
_DARK_DISABLED = {
    Role.WindowText: "#7f7f7f",
    Role.Text: "#7f7f7f",
    Role.ButtonText: "#7f7f7f",
    Role.Highlight: "#505050",
}


def dark_palette() -> QPalette:
    """A dark palette for every role the widgets draw with."""
    palette = QPalette()
    for role, colour in _DARK.items():
        palette.setColor(role, QColor(colour))
    for role, colour in _DARK_DISABLED.items():
        palette.setColor(Group.Disabled, role, QColor(colour))
    return palette


def use_scheme(app: QApplication, scheme: Qt.ColorScheme) -> None:
    """Ask for the light or dark scheme; where the platform cannot give it, set the
    palette of that scheme (the style's standard palette for light)."""
    app.styleHints().setColorScheme(scheme)
    if app.styleHints().colorScheme() == scheme:
        return  # the platform follows it, and repaints every window itself
    dark = scheme == Qt.ColorScheme.Dark
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
