"""The running node: composition root that wires p2p to localstore (issue 4)."""
