"""The store contract, run against both backends: SQLite files and a real ``redis-server``.

Every behaviour test takes the ``backend`` fixture, so the two backends are held to the same
contract; tests of what only one backend has (SQLite files, locking, migrations) say so. One
file per subject; ``conftest`` holds the fixtures, ``helpers`` the factories.
"""
