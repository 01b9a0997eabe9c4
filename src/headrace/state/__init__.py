"""The hub's state held in memory and written through to the store.

Each service here has the same shape: ``load()`` reads its documents from the store at
start, every change is checked, written to the store and only then applied to the
in-memory cache (so a refused change leaves nothing behind), and the hot paths
(pipeline, logins) read the cache only.

- ``registry``: organizations, thing models, products, devices, channels;
- ``accounts``: service accounts and their access tokens;
- ``files``: file records over the content-addressed blob store;
- ``online``: devices' online state, with listeners for what follows a change.
"""
