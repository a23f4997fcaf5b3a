"""The e2e tests stop ``tmrl2`` processes with SIGINT (Ctrl-C): those must not inherit an
ignored SIGINT.

A shell without job control starts background commands (``pytest ... &``, ``nohup``) with
SIGINT ignored, and an ignored signal stays ignored across ``exec``: the ``tmrl2`` processes
the tests start would never see Ctrl-C, and the tests that send it would hang and fail. A
handler in this process is reset to the default in its children, so they start as from a
terminal.
"""

import signal

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
