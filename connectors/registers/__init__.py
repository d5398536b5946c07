"""The hub's own registers as a source: what the archive writes about itself and must keep (销毁清册)."""
