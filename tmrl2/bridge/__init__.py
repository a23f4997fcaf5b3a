"""The game bridge's wire protocol (version 1), shared by the OpenPlanet plugin's peer
(:mod:`tmrl2.envs.trackmania`) and the simulator's protocol server (:mod:`tmrl2.envs.sim.serve`).

Pure byte handling: no sockets, no threads, no numpy beyond FRAME pixels. The spec lives in
docs/protocol.md.
"""
