"""Opening a community of 100,000 posts in the desktop app and scrolling to its end
(issue 6: "opens and scrolls without delay"): the time from choosing the community to
its first page painted, and the worst frame while scrolling to the end.

The member's store holds one community of 100,000 posts (made with publish_many). The
app opens offscreen on it (a real Bridge and node, the real MainWindow); the sidebar
chooses the community, and the feed's first paint is timed. Then the feed is scrolled
to the bottom again and again (the view fetches the next page each time) until no
post is left, while a 5 ms QTimer records how late each tick fires and each step's
repaint is timed.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_feed.py [--posts N]
"""

from __future__ import annotations

import argparse
import gc
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
from kithnet.localstore.store import Store, now_ms
from kithnet.node import demo

FIRST_PAINT_LIMIT_MS = 100.0  # "without delay": an answer within 0.1 s feels instant
FRAME_LIMIT_MS = 50.0
TICK_MS = 5


def build(folder: Path, posts: int) -> Path:
    with Store.create(folder / "you", demo.DEMO_PASSPHRASE, name="You", kdf=demo.DEMO_KDF) as store:
        genesis = store.publish({"kind": "community", "name": "Busy", "visibility": "public"})
        start = now_ms() - 10**9
        kinds = ("post", "post", "question", "offer")
        for first in range(0, posts, 2000):
            store.publish_many(
                [
                    {
                        "kind": "post",
                        "community": genesis.id,
                        "type": kinds[i % 4],
                        "text": f"Post {i}: " + "words of a neighbour " * (1 + i % 12),
                        **({"tags": ["gardening", "tools"]} if i % 3 == 0 or i % 4 == 3 else {}),
                        **({"area": "Hackney", "terms": "ask me"} if i % 4 == 3 else {}),
                        "created_at": start + i * 1000,
                    }
                    for i in range(first, min(first + 2000, posts))
                ]
            )
        store.mark_all_read()
    return folder / "you"


def _log_collections() -> None:
    """BENCH_DEBUG: say when Python's garbage collector stops every thread for long."""
    started: dict[str, float] = {}

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started["at"] = time.perf_counter()
        elif (spent := (time.perf_counter() - started.get("at", 0.0)) * 1000) > 20:
            print(f"garbage collection of generation {info['generation']}: {spent:.0f} ms")

    gc.callbacks.append(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    args = parser.parse_args()
    if os.environ.get("BENCH_DEBUG"):
        _log_collections()
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        you = build(Path(folder), args.posts)
        print(f"{args.posts:,} posts stored in {time.perf_counter() - began:.1f} s")
        gc.collect()  # the building's garbage is not the app's
        bridge = Bridge(you, ("/ip4/127.0.0.1/tcp/0",))
        gaps: list[float] = []
        paints: list[float] = []
        clock = QElapsedTimer()
        windows: list[MainWindow] = []
        moments: dict[str, float] = {}

        def tick() -> None:
            if clock.isValid() and "scrolling" in moments and "end" not in moments:
                gaps.append(clock.nsecsElapsed() / 1e6)
            clock.restart()

        def painted() -> None:
            if "chosen" in moments and "painted" not in moments:
                moments["painted"] = time.perf_counter()
                QTimer.singleShot(200, start_scrolling)

        def unlocked(info: dict[str, object]) -> None:
            window = MainWindow(bridge)
            windows.append(window)
            window.resize(1000, 700)
            window.sidebar.selectionModel().currentChanged.connect(
                lambda *_: moments.setdefault("chosen", time.perf_counter())
            )
            window.feed_view.painted.connect(painted)
            window.show()

        def start_scrolling() -> None:
            moments["scrolling"] = time.perf_counter()
            step.start(0)

        def scroll() -> None:
            view = windows[0].feed_view
            feed = view.feed
            assert feed is not None
            if not feed.has_more() and not feed._loading:
                moments["end"] = time.perf_counter()
                step.stop()
                app.quit()
                return
            view.scrollToBottom()
            started = time.perf_counter()
            view.viewport().repaint()
            paints.append((time.perf_counter() - started) * 1000)
            if os.environ.get("BENCH_DEBUG") and paints[-1] > 40:
                bar = view.verticalScrollBar()
                print(
                    f"slow repaint {paints[-1]:.0f} ms: {feed.rowCount()} rows,"
                    f" value {bar.value()} of {bar.maximum()}, page {feed.page}"
                )

        timer = QTimer()
        timer.timeout.connect(tick)
        timer.start(TICK_MS)
        step = QTimer()
        step.timeout.connect(scroll)
        bridge.unlocked.connect(unlocked)
        bridge.unlock_failed.connect(lambda message: (print(message), app.quit()))
        QTimer.singleShot(600_000, app.quit)  # bounded: ten minutes at most
        bridge.unlock(demo.DEMO_PASSPHRASE)
        app.exec()
        rows = windows[0].feed.rowCount() if windows and windows[0].feed else 0
        bridge.stop()
    if "painted" not in moments:
        print("the feed was never painted")
        return
    first = (moments["painted"] - moments["chosen"]) * 1000
    print(
        f"first page painted {first:.0f} ms after choosing the community"
        f" (limit {FIRST_PAINT_LIMIT_MS:.0f} ms: {first / FIRST_PAINT_LIMIT_MS:.2f})"
    )
    if "end" not in moments:
        print(f"scrolling did not reach the end in time ({rows:,} posts shown)")
    else:
        print(
            f"scrolled to the end ({rows:,} posts shown) in"
            f" {moments['end'] - moments['scrolling']:.1f} s, {len(paints):,} steps"
        )
    stalls = sorted(g - TICK_MS for g in gaps) or [0.0]
    worst = max(stalls[-1], max(paints, default=0.0))
    print(
        f"event loop stalls over {len(stalls):,} ticks of {TICK_MS} ms: median"
        f" {statistics.median(stalls):.1f} ms, p99 {stalls[int(len(stalls) * 0.99)]:.1f} ms,"
        f" worst {stalls[-1]:.1f} ms; repaint per step: median"
        f" {statistics.median(paints or [0.0]):.1f} ms, worst {max(paints, default=0.0):.1f} ms"
    )
    print(
        f"worst frame {worst:.0f} ms (limit {FRAME_LIMIT_MS:.0f} ms: {worst / FRAME_LIMIT_MS:.2f})"
    )


if __name__ == "__main__":
    main()
