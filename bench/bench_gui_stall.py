"""The longest stalls of the desktop app's event loop while 10,000 records arrive by
catch-up sync (issue 6: p99 under 50 ms, measured with a timer inside the app).

Bob's node (a real `kithnet serve` on 127.0.0.1) holds a community with 10,000 posts;
the app's member has joined it but holds none of them. The app opens its main window
(offscreen) on that community, its node connects to Bob's and catches up, while a 5 ms
QTimer in the app records how late each tick fires.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_stall.py [--posts N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

from kithnet.gui.app import MainWindow
from kithnet.gui.bridge import Bridge
from kithnet.node import demo

LIMIT_MS = 50.0
TICK_MS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=10_000)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as folder:
        you, peers = demo.busy(Path(folder), args.posts)
        with demo.running_peers(peers):
            bridge = Bridge(you, ("/ip4/127.0.0.1/tcp/0",))
            gaps: list[float] = []
            clock = QElapsedTimer()
            window: list[MainWindow] = []
            started = [0.0]
            done = [0.0]

            def tick() -> None:
                if clock.isValid():
                    gaps.append(clock.nsecsElapsed() / 1e6)
                clock.restart()

            def unlocked(info: dict[str, object]) -> None:
                window.append(MainWindow(bridge))
                window[0].show()
                started[0] = time.perf_counter()

            def check(request: int, result: object) -> None:
                if isinstance(result, dict) and result.get("records", 0) >= args.posts:
                    done[0] = time.perf_counter()
                    app.quit()

            timer = QTimer()
            timer.timeout.connect(tick)
            timer.start(TICK_MS)
            poll = QTimer()
            poll.timeout.connect(lambda: bridge.call("status"))
            poll.start(500)
            bridge.unlocked.connect(unlocked)
            bridge.answered.connect(check)
            QTimer.singleShot(300_000, app.quit)  # bounded: five minutes at most
            bridge.unlock(demo.DEMO_PASSPHRASE)
            app.exec()
            bridge.stop()
    gaps.sort()
    stalls = [g - TICK_MS for g in gaps]
    p99 = stalls[int(len(stalls) * 0.99)]
    print(
        f"{args.posts:,} records caught up in {done[0] - started[0]:.1f} s"
        if done[0]
        else "the catch-up did not finish in time"
    )
    print(
        f"event loop stalls over {len(stalls):,} ticks of {TICK_MS} ms: median"
        f" {statistics.median(stalls):.1f} ms, p99 {p99:.1f} ms, worst {stalls[-1]:.1f} ms"
        f" (p99 limit {LIMIT_MS:.0f} ms: {p99 / LIMIT_MS:.2f})"
    )


if __name__ == "__main__":
    main()
