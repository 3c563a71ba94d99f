"""libp2p host, one pubsub topic per community, catch-up sync (issue 4). Knows no storage."""
