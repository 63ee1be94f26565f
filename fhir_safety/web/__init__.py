"""Population dashboards in the browser (issue #10): valproate registry, long stays, ward boards
and alert fatigue.

Server-rendered HTML (Jinja2 templates, one stylesheet, charts drawn as inline SVG on the
server), no JavaScript and no build step. The numbers come from the same service functions as
the JSON endpoints (``services.population``, ``services.registry``, the feedback store).

* ``render``: the Jinja2 environment and the page renderer. No I/O beyond reading templates.
* ``charts``: SVG charts with text alternatives. Pure.
* ``views``: the alert-fatigue page's sums over the feedback store's summary and daily. Pure.
* ``api/``: the FastAPI router (pages, CSV/JSON downloads, the stylesheet) and who may see them.

Guide: docs/dashboards.md.
"""
