"""TrackMania 2020 through the OpenPlanet plugin: protocol client, controls, screen capture,
the Gymnasium environment and the plugin installer."""
