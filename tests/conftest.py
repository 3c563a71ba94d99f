"""Shared test set-up: Qt offscreen, Hypothesis profiles, fixed clocks."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# With no DISPLAY and no platform, Qt aborts the whole test process.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# No wall-clock deadlines: a loaded CI machine must not turn slowness into failures.
settings.register_profile("default", deadline=None, max_examples=200)
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# The desktop app's fixtures (demo_app), for every GUI test module.
pytest_plugins = ["tests.gui_support"]
