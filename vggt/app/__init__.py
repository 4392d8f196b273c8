"""`vggt app`: reconstructions in the web browser (Gradio), with a scriptable `/reconstruct` API endpoint.

workspace.py owns the temporary files, reconstruction.py what a request does (no Gradio), ui.py the page and
server.py the process. gradio is optional: ui.import_gradio imports it when the server starts."""
