"""The warm command server: one-shot ``kodev build`` / ``kodev skaffold build|deps`` calls
without Python's start-up and imports.

Skaffold, Tilt and scripts start kodev once per build, and Skaffold twice per artifact for
``deps``: each call used to pay the interpreter's start-up and kodev's imports (~0.1-0.15 s
of CPU, more than a no-change build's real work). Like the Gradle daemon or buck2's
server, the first such call starts a server in the background; later calls hand their
work to it.

How a call runs on the server, and why it gives the same result as a cold run: the
server has imported kodev and its libraries, and nothing else: it never runs a command
itself. Each call **forks** the server; the child takes the caller's argv, environment,
working directory, umask and its stdin/stdout/stderr file descriptors (passed over the
Unix socket), and then runs exactly the code a cold ``kodev`` runs (``kodev.cli.main``)
and exits the way a cold process does. No state outlives a call: caches are per child,
so there is nothing to invalidate. Output goes straight to the caller's descriptors
(a terminal stays a terminal: colours, progress), the exit status comes back through the
socket, and the caller forwards Ctrl-C and SIGTERM to the child.

Where a warm child could differ from a cold run, the client and the server refuse to
pair:

* another kodev, Python or library version: the socket's name holds a key of the
  interpreter, kodev's location and the interpreter's start-up settings (``PYTHON*``,
  locale variables, ``sys.flags``); and before each call the server checks that no file
  it imported has changed since it started (an upgrade, an edit in a development
  checkout). If one has, it answers "stale" and exits; the call runs cold and starts a
  new server. (A module the server has not imported is read from disk by the child, as
  a cold run reads it.)
* another user, network namespace or mount namespace: part of the key as well, and the
  server checks the caller's credentials (``SO_PEERCRED``);
* ``KODEV_SERVER=off`` runs every call cold and starts no server.

The server exits after ``KODEV_SERVER_IDLE`` seconds without a call (default 600), on
SIGTERM, or with ``kodev server stop``. Modules: :mod:`kodev.warm.protocol` (the key, the
paths and the wire format; standard library only), :mod:`kodev.warm.client` (the
``kodev`` entry point: hand over or run cold), :mod:`kodev.warm.server`.
"""

# True in a server's forked child while it runs a call (set by server.Call.run): work
# worth doing ahead (skaffold deps' prebuild) is done only where the imports are warm.
SERVED_CALL = False
