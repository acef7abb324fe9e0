"""The web inspector: a page on the REST port that draws what the models answer (probability
bars, thresholds, attention heat maps and overlays) by calling the same REST API as any client.

Plain HTML, CSS and JavaScript shipped in this package (no build step, no CDN: it works offline
on the machine that serves it); routes.py mounts it on the REST app, models.py answers the one
question the Open Inference Protocol does not: what each model's manifest says.
"""

from serving.inspector.routes import OPEN_PATHS, add_routes

__all__ = ["OPEN_PATHS", "add_routes"]
