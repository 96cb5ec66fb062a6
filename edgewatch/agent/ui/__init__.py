"""The live page: signals and green/red score bars in the browser, served by the agent.

Only the standard library and NumPy: the page is static files shipped in the
package, the data flows as server-sent events.
"""

from edgewatch.agent.ui.server import LiveView, UiOptions, UiServer, start_ui

__all__ = ["LiveView", "UiOptions", "UiServer", "start_ui"]
