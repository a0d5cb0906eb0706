"""Watcher's own ingestion availability: heartbeats per replica (`heartbeat`), the blind
windows derived from them and the decision the checks take on evidence inside one
(`windows`, pure)."""
