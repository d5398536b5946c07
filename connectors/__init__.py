"""Connectors: metadata plus one read function per stream; paging, state and retries live in the runtime."""
